package events

import "unicode/utf8"

// Payload is the JSON body of one webhook delivery, exactly as echo3D
// documents it. Field order is fixed by the struct; the arrays are never
// null when marshalled.
type Payload struct {
	// Event is the trigger name.
	Event Trigger `json:"event"`
	// APIKey is the collection key (the request's "key" parameter).
	APIKey string `json:"apiKey"`
	// EntryIDs lists the entries concerned, in request order.
	EntryIDs []string `json:"entryIds"`
	// MetadataKeys pairs index by index with MetadataValues.
	MetadataKeys []string `json:"metadataKeys"`
	// MetadataValues pairs index by index with MetadataKeys.
	MetadataValues []string `json:"metadataValues"`
}

// MarshalJSON encodes the payload with empty arrays in place of nil ones.
func (p Payload) MarshalJSON() ([]byte, error) {
	return p.AppendJSON(make([]byte, 0, p.sizeHint())), nil
}

// sizeHint is the length of p's JSON encoding when no string needs
// escaping.
func (p Payload) sizeHint() int {
	n := len(`{"event":"","apiKey":"","entryIds":[],"metadataKeys":[],"metadataValues":[]}`) + len(p.Event) + len(p.APIKey)
	for _, list := range [][]string{p.EntryIDs, p.MetadataKeys, p.MetadataValues} {
		for _, s := range list {
			n += len(s) + 3 // quotes and comma
		}
	}
	return n
}

// AppendJSON appends to dst the payload's JSON encoding: the bytes
// json.Marshal writes for it (struct field order, empty arrays in place of
// nil ones, strings escaped as encoding/json escapes them, HTML characters
// included), without reflection. A caller that calls it directly also
// spares json.Marshal's re-validation of MarshalJSON's output.
func (p Payload) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"event":`...)
	dst = appendJSONString(dst, string(p.Event))
	dst = append(dst, `,"apiKey":`...)
	dst = appendJSONString(dst, p.APIKey)
	dst = append(dst, `,"entryIds":`...)
	dst = appendJSONStrings(dst, p.EntryIDs)
	dst = append(dst, `,"metadataKeys":`...)
	dst = appendJSONStrings(dst, p.MetadataKeys)
	dst = append(dst, `,"metadataValues":`...)
	dst = appendJSONStrings(dst, p.MetadataValues)
	return append(dst, '}')
}

// appendJSONStrings appends a JSON array of strings; nil is [].
func appendJSONStrings(dst []byte, list []string) []byte {
	dst = append(dst, '[')
	for i, s := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaped exactly as
// encoding/json's encoder escapes it with HTML escaping on (its default):
// ", \ and control characters, <, > and &, U+2028 and U+2029; each byte of
// invalid UTF-8 becomes \ufffd.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
