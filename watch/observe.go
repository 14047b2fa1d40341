package watch

import (
	"github.com/tidwall/gjson"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

// lookupMax is the most watched entries of one collection looked up one by
// one in a /query body; beyond it the body's db object is walked once.
const lookupMax = 4

// Observe is passive detection: body is a successful /query response for
// the collection apiKey (`{"apiKey": ..., "db": {<id>: entry, ...}}`) that
// passed through the proxy. Every watched entry of apiKey that the body
// shows processed (events.QueryEntry, events.EntryProcessed) resolves before
// Observe returns: Processed is emitted and the watch ends. It returns how
// many resolved. A body that is not such a listing resolves nothing.
func (m *Manager) Observe(apiKey string, body []byte) int {
	m.mu.Lock()
	entries := m.byKey[apiKey]
	if len(entries) == 0 {
		m.mu.Unlock()
		return 0
	}
	candidates := make([]*item, 0, len(entries))
	for _, it := range entries {
		if !it.emitting {
			candidates = append(candidates, it)
		}
	}
	m.mu.Unlock()
	if len(candidates) == 0 {
		return 0
	}

	var done []*item
	if len(candidates) <= lookupMax {
		for _, it := range candidates {
			if entry, ok := events.QueryEntry(body, it.w.EntryID); ok && events.EntryProcessed(entry) {
				done = append(done, it)
			}
		}
	} else {
		if !gjson.ValidBytes(body) {
			return 0
		}
		want := make(map[string]*item, len(candidates))
		for _, it := range candidates {
			want[it.w.EntryID] = it
		}
		gjson.GetBytes(body, "db").ForEach(func(k, v gjson.Result) bool {
			if it := want[k.String()]; it != nil && events.EntryProcessed(v) {
				done = append(done, it)
				delete(want, k.String())
			}
			return len(want) > 0
		})
	}
	n := 0
	for _, it := range done {
		if m.resolve(it, ProcessedPassive) {
			n++
		}
	}
	return n
}
