package caddymodule

import (
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

// Reasons why the handler skipped some or all of a call's input while
// deriving events. The call itself is always proxied unchanged; these say
// what the webhooks did not learn from it, and why.
const (
	// skipRequestIncomplete: the request's parameters could not all be
	// read (malformed or truncated multipart, a field over max_field_size,
	// too many fields, a form over max_form_size, a read error), for a
	// call the upstream answered with success.
	skipRequestIncomplete = "request_incomplete"
	// skipResponseTooLarge: the success response whose body names the new
	// entry was larger than max_response_size (after decompression, so a
	// gzip bomb lands here).
	skipResponseTooLarge = "response_too_large"
	// skipResponseEncoding: that body had a Content-Encoding other than
	// gzip or identity, or corrupt gzip.
	skipResponseEncoding = "response_encoding"
	// skipResponseInvalid: that body was not a JSON object with an id.
	skipResponseInvalid = "response_invalid"
	// skipInvalidUTF8: an event would have carried a key, id or value that
	// is not valid UTF-8; it was dropped rather than altered.
	skipInvalidUTF8 = "invalid_utf8"
	// skipStoreError: derived events could not be written to the outbox
	// (store closed, disk full, I/O error) and were lost.
	skipStoreError = "store_error"
)

// skipReasons lists every reason, in documentation order.
var skipReasons = []string{
	skipRequestIncomplete,
	skipResponseTooLarge,
	skipResponseEncoding,
	skipResponseInvalid,
	skipInvalidUTF8,
	skipStoreError,
}

// skipCounts counts the skips per reason since the process started,
// across config reloads, as a Prometheus counter would.
var skipCounts = func() map[string]*atomic.Uint64 {
	m := make(map[string]*atomic.Uint64, len(skipReasons))
	for _, r := range skipReasons {
		m[r] = new(atomic.Uint64)
	}
	return m
}()

// skipped returns how many times reason was counted.
func skipped(reason string) uint64 {
	if c := skipCounts[reason]; c != nil {
		return c.Load()
	}
	return 0
}

// countSkip counts one skip for reason and returns the new total.
func countSkip(reason string) uint64 {
	if c := skipCounts[reason]; c != nil {
		return c.Add(1)
	}
	return 0
}

// skip counts one skip and logs it at debug level. Fields must never carry
// parameter values.
func (h *Handler) skip(reason string, rule *events.Rule, fields ...zap.Field) {
	countSkip(reason)
	if c := h.logger.Check(zapcore.DebugLevel, "event input skipped"); c != nil {
		c.Write(append([]zap.Field{zap.String("reason", reason), zap.String("rule", rule.Name)}, fields...)...)
	}
}

// responseSkipReason says why a success response whose body a rule needed
// derived nothing, or "" when the body was usable (the request, not the
// response, was lacking).
func responseSkipReason(rule *events.Rule, cw *captureWriter, body []byte, bodyComplete bool) string {
	switch {
	case cw.problem != "":
		return cw.problem
	case !bodyComplete:
		return skipResponseInvalid
	}
	if _, ok := rule.ResponseEntryID(body); !ok {
		return skipResponseInvalid
	}
	return ""
}

// validUTF8 reports whether every payload is valid UTF-8.
func validUTF8(payloads []events.Payload) bool {
	for _, p := range payloads {
		if !p.ValidUTF8() {
			return false
		}
	}
	return true
}
