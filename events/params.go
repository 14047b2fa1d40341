package events

import (
	"iter"
	"net/url"
	"strings"
)

// Params is an ordered, multi-valued view of the parameters of one request,
// merged from its query string and its body. Names are case-sensitive, as
// echo3D's are. The zero value is an empty, usable Params.
//
// Values are added in the order they are seen; the handler adds the query
// string first and the body fields after it, so Get returns the query
// string's value when both carry the same name.
type Params struct {
	list []param
}

// param is one name/value pair.
type param struct {
	name, value string
}

// Add appends one value for name.
func (p *Params) Add(name, value string) {
	p.list = append(p.list, param{name: name, value: value})
}

// Get returns the first value for name, or "" if there is none.
func (p *Params) Get(name string) string {
	if p == nil {
		return ""
	}
	for _, kv := range p.list {
		if kv.name == name {
			return kv.value
		}
	}
	return ""
}

// Values returns every value for name in the order added, or nil if there
// is none.
func (p *Params) Values(name string) []string {
	if p == nil {
		return nil
	}
	var vals []string
	for _, kv := range p.list {
		if kv.name == name {
			vals = append(vals, kv.value)
		}
	}
	return vals
}

// Has reports whether name is present, even with an empty value.
func (p *Params) Has(name string) bool {
	if p == nil {
		return false
	}
	for _, kv := range p.list {
		if kv.name == name {
			return true
		}
	}
	return false
}

// Len returns the number of name/value pairs held.
func (p *Params) Len() int {
	if p == nil {
		return 0
	}
	return len(p.list)
}

// AddQuery adds the pairs of a URL query string (without the leading "?"),
// in order. It never fails: a pair whose name or value is not valid percent
// encoding is skipped, and so are empty pairs. Pairs are separated by "&"
// only; a ";" is an ordinary character, as it is for the form parsers of
// common web frameworks (Go's net/url would instead drop such a pair).
// A pair without "=" is a name with an empty value; "+" decodes to a space.
func (p *Params) AddQuery(rawQuery string) {
	if p.list == nil && rawQuery != "" {
		// One allocation for a typical request's pairs, instead of one
		// per doubling; bounded, as "&" alone makes no pair.
		p.list = make([]param, 0, min(strings.Count(rawQuery, "&")+1, maxPresized))
	}
	for name, value := range queryPairs(rawQuery) {
		p.Add(name, value)
	}
}

// maxPresized bounds the pairs AddQuery makes room for up front.
const maxPresized = 16

// AddURLEncoded adds the pairs of an application/x-www-form-urlencoded body,
// with the same syntax and leniency as AddQuery.
func (p *Params) AddURLEncoded(body []byte) {
	if len(body) == 0 {
		return
	}
	p.AddQuery(string(body))
}

// addForm adds the pairs of an urlencoded body within lim (defaults
// applied): a value longer than MaxFieldBytes is dropped, and pairs beyond
// the first MaxFields are ignored. ok is false if anything was left out.
func (p *Params) addForm(body []byte, lim Limits) (ok bool) {
	ok = true
	added := 0
	for name, value := range queryPairs(string(body)) {
		if added >= lim.MaxFields {
			return false
		}
		if int64(len(value)) > lim.MaxFieldBytes {
			ok = false
			continue
		}
		p.Add(name, value)
		added++
	}
	return ok
}

// queryPairs yields the decoded name/value pairs of a query string, in
// order, with the syntax and leniency documented on AddQuery.
func queryPairs(raw string) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for raw != "" {
			var pair string
			pair, raw, _ = strings.Cut(raw, "&")
			if pair == "" {
				continue
			}
			name, value, _ := strings.Cut(pair, "=")
			name, ok := unescapeQuery(name)
			if !ok {
				continue
			}
			value, ok = unescapeQuery(value)
			if !ok {
				continue
			}
			if !yield(name, value) {
				return
			}
		}
	}
}

// unescapeQuery decodes one query component, without allocating when there
// is nothing to decode. ok is false for invalid percent encoding.
func unescapeQuery(s string) (string, bool) {
	if !strings.ContainsAny(s, "%+") {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	if err != nil {
		return "", false
	}
	return u, true
}
