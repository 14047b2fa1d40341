package events

import (
	"net/url"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
)

// Exchange is what Derive needs to know about one proxied call.
type Exchange struct {
	// Params are the request's merged parameters.
	Params *Params
	// Status is the upstream response status.
	Status int
	// Body is the captured, decoded response body; it may be nil.
	Body []byte
	// BodyComplete is false when the capture was truncated (or the
	// response aborted). A rule that reads the body derives nothing from an
	// incomplete one.
	BodyComplete bool
	// PriorValue is the lookup's result, "" if there was none or it
	// failed.
	PriorValue string
}

// Derive returns the payloads a call derives under r, in delivery order,
// or nil when it derives nothing. Rules that hold for every trigger: only
// a 2xx status derives anything; the apiKey is the "key" parameter, and a
// request without one derives nothing; nothing else from the request goes
// into a payload; the arrays are empty, never nil.
func (r *Rule) Derive(x Exchange) []Payload {
	if r == nil || r.Observe || x.Params == nil || x.Status < 200 || x.Status > 299 {
		return nil
	}
	apiKey := x.Params.Get(apiKeyParam)
	if apiKey == "" {
		return nil
	}
	ids := r.entryIDs(x.Params)
	if r.RequireEntries && len(ids) == 0 {
		return nil
	}
	byEntry := len(ids) > 0
	trigger := r.Trigger
	if byEntry && r.EntryTrigger != "" {
		trigger = r.EntryTrigger
	}

	keys, values := []string{}, []string{}
	if r.MetaKeyParam != "" {
		k := x.Params.Get(r.MetaKeyParam)
		if k == "" {
			return nil
		}
		var v string
		switch {
		case r.Lookup != nil:
			v = x.PriorValue
		case r.MetaValueParam != "":
			v = x.Params.Get(r.MetaValueParam)
		}
		kv := []string{k, v} // one allocation for both; capped so neither grows into the other
		keys, values = kv[0:1:1], kv[1:2:2]
	}

	if r.ResponseID == "" {
		if ids == nil {
			ids = []string{}
		}
		return []Payload{{Event: trigger, APIKey: apiKey, EntryIDs: ids, MetadataKeys: keys, MetadataValues: values}}
	}

	if !x.BodyComplete {
		return nil
	}
	entry, ok := jsonObject(x.Body)
	if !ok {
		return nil
	}
	id := entry.Get(r.ResponseID)
	if id.Type != gjson.String || id.Str == "" {
		return nil
	}
	out := make([]Payload, 1, 2)
	out[0] = Payload{Event: trigger, APIKey: apiKey, EntryIDs: []string{id.Str}, MetadataKeys: keys, MetadataValues: values}
	if r.Processed && !byEntry && !r.noWait(x.Params) && EntryProcessed(entry) {
		out = append(out, Payload{Event: Processed, APIKey: apiKey, EntryIDs: []string{id.Str}, MetadataKeys: []string{}, MetadataValues: []string{}})
	}
	return out
}

// LookupQuery returns the path and query of the lookup r needs before
// forwarding a request with parameters p. Each parameter named by the
// lookup is copied with its first value, when present. ok is false when r
// has no lookup or p lacks what the lookup needs (a non-empty key and
// metadata key), in which case no lookup should be made.
func (r *Rule) LookupQuery(p *Params) (path string, query url.Values, ok bool) {
	if r.Lookup == nil || p.Get(apiKeyParam) == "" {
		return "", nil, false
	}
	if r.MetaKeyParam != "" && p.Get(r.MetaKeyParam) == "" {
		return "", nil, false
	}
	query = make(url.Values, len(r.Lookup.Params))
	for _, name := range r.Lookup.Params {
		if p.Has(name) {
			query.Set(name, p.Get(name))
		}
	}
	return r.Lookup.Path, query, true
}

// noWait reports whether the request asked the upstream not to wait for
// processing.
func (r *Rule) noWait(p *Params) bool {
	return r.NoWaitParam != "" && p.Get(r.NoWaitParam) == "true"
}

// entryIDs collects the entry ids referenced by the request: the values of
// every EntryParams parameter, in request order, split at commas, trimmed,
// without empties or duplicates. It returns nil when there are none.
func (r *Rule) entryIDs(p *Params) []string {
	var (
		ids  []string
		seen map[string]struct{} // used once ids is long enough to make scanning slow
	)
	for _, kv := range p.list {
		if !slices.Contains(r.EntryParams, kv.name) {
			continue
		}
		for rest := kv.value; rest != ""; {
			var id string
			id, rest, _ = strings.Cut(rest, ",")
			id = strings.TrimSpace(id)
			if id == "" {
				continue
			}
			if seen == nil && len(ids) >= dedupScanMax {
				seen = make(map[string]struct{}, 2*len(ids))
				for _, v := range ids {
					seen[v] = struct{}{}
				}
			}
			if seen != nil {
				if _, dup := seen[id]; dup {
					continue
				}
				seen[id] = struct{}{}
			} else if slices.Contains(ids, id) {
				continue
			}
			ids = append(ids, id)
		}
	}
	return ids
}

// dedupScanMax is the most entry ids de-duplicated by scanning; beyond it a
// set is used, so a request listing thousands of ids stays linear.
const dedupScanMax = 32

// jsonObject parses body, which must be one valid JSON object.
func jsonObject(body []byte) (gjson.Result, bool) {
	if len(body) == 0 || !gjson.ValidBytes(body) {
		return gjson.Result{}, false
	}
	v := gjson.ParseBytes(body)
	if !v.IsObject() {
		return gjson.Result{}, false
	}
	return v, true
}
