package events

import (
	"mime"
	"strings"
)

// Default limits used when a Limits field is zero or negative.
const (
	DefaultMaxFieldBytes int64 = 64 << 10
	DefaultMaxFields     int   = 256
	DefaultMaxFormBytes  int64 = 1 << 20
)

// Limits bounds the memory spent capturing the parameters of one request
// body. Whatever the body size, a capture holds at most about MaxFormBytes
// of parameter text, plus fixed-size buffers.
type Limits struct {
	// MaxFieldBytes is the longest text field kept: a multipart text part
	// or one urlencoded value. A longer field is dropped (and the capture
	// reported incomplete). Zero means DefaultMaxFieldBytes.
	MaxFieldBytes int64
	// MaxFields is the most text fields kept from one body (multipart or
	// urlencoded); later ones are dropped (and the capture reported
	// incomplete). Zero means DefaultMaxFields.
	MaxFields int
	// MaxFormBytes is the longest urlencoded body parsed, and also the
	// most multipart text bytes kept in total. Zero means
	// DefaultMaxFormBytes.
	MaxFormBytes int64
}

// withDefaults returns l with every unset field given its default.
func (l Limits) withDefaults() Limits {
	if l.MaxFieldBytes <= 0 {
		l.MaxFieldBytes = DefaultMaxFieldBytes
	}
	if l.MaxFields <= 0 {
		l.MaxFields = DefaultMaxFields
	}
	if l.MaxFormBytes <= 0 {
		l.MaxFormBytes = DefaultMaxFormBytes
	}
	return l
}

// bodyKind says how a request body carries parameters.
type bodyKind uint8

const (
	// bodyOpaque carries none we can read: pass it through untouched.
	bodyOpaque bodyKind = iota
	// bodyForm is application/x-www-form-urlencoded.
	bodyForm
	// bodyMultipart is multipart/form-data with a boundary.
	bodyMultipart
)

const (
	formType      = "application/x-www-form-urlencoded"
	multipartType = "multipart/form-data"
)

// classifyBody inspects a Content-Type header value. ok is false when the
// body is a form we cannot parse (multipart without a usable boundary), so
// its parameters will be missing. Content types that are not forms cost a
// prefix comparison and no allocation.
func classifyBody(contentType string) (kind bodyKind, boundary string, ok bool) {
	ct := strings.TrimLeft(contentType, " \t")
	if !hasPrefixFold(ct, formType) && !hasPrefixFold(ct, multipartType) {
		return bodyOpaque, "", true
	}
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil && err != mime.ErrInvalidMediaParameter {
		return bodyOpaque, "", true
	}
	switch mediaType {
	case formType:
		return bodyForm, "", true
	case multipartType:
		boundary = params["boundary"]
		if boundary == "" {
			return bodyOpaque, "", false
		}
		return bodyMultipart, boundary, true
	}
	return bodyOpaque, "", true
}

// hasPrefixFold reports whether s starts with the lower-case ASCII prefix,
// ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFoldASCII(prefix, s[:len(prefix)])
}

// equalFoldASCII reports whether s equals lower, which must be lower case,
// ignoring the case of ASCII letters only. It does not allocate.
func equalFoldASCII(lower, s string) bool {
	if len(lower) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
