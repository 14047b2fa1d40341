package events

import (
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// ValidUTF8 reports whether every string of p is valid UTF-8. A payload
// that is not would be changed by JSON encoding (invalid bytes become
// U+FFFD), so a receiver would get ids or values the client never sent;
// the handler drops such payloads instead.
func (p Payload) ValidUTF8() bool {
	if !utf8.ValidString(p.APIKey) {
		return false
	}
	for _, list := range [][]string{p.EntryIDs, p.MetadataKeys, p.MetadataValues} {
		for _, s := range list {
			if !utf8.ValidString(s) {
				return false
			}
		}
	}
	return true
}

// ResponseEntryID returns the entry id a rule with a ResponseID reads from
// a success response body, as Derive does, and whether there is one. It
// lets a caller tell a response Derive could not use from a request that
// lacked what Derive needs.
func (r *Rule) ResponseEntryID(body []byte) (string, bool) {
	if r == nil || r.ResponseID == "" {
		return "", false
	}
	entry, ok := jsonObject(body)
	if !ok {
		return "", false
	}
	id := entry.Get(r.ResponseID)
	if id.Type != gjson.String || id.Str == "" {
		return "", false
	}
	return id.Str, true
}
