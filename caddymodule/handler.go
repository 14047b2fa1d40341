package caddymodule

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the handler's options.
const (
	defaultMaxResponseSize = 1 << 20
	defaultLookupTimeout   = 10 * time.Second
	maxLookupBody          = 64 << 10
)

// Handler watches the echo3D API traffic that passes through it, derives
// webhook events from the calls that change a collection, and hands them to
// the echo3d_webhooks app. Requests and responses pass through unchanged;
// request bodies are never buffered whole (only small text fields are kept
// while the proxy streams the body) and a request that no rule matches costs
// a path comparison. The handler never fails a request because of its own
// trouble: problems are logged and the request is proxied.
type Handler struct {
	// DeleteParams names the request parameters that carry the ids of a
	// /delete call (comma lists are split). echo3D has not documented them;
	// default: entry entries id.
	DeleteParams []string `json:"delete_params,omitempty"`

	// EditParams names the /upload parameters that point an upload at an
	// existing entry, making it an Edit. Unconfirmed upstream; default:
	// entryId entry.
	EditParams []string `json:"edit_params,omitempty"`

	// MaxFieldSize is the longest request text field kept (a multipart text
	// part or an urlencoded value), in bytes. Default: 64 KiB.
	MaxFieldSize int64 `json:"max_field_size,omitempty"`

	// MaxFormSize is the largest urlencoded request body parsed for
	// parameters, in bytes. Default: 1 MiB.
	MaxFormSize int64 `json:"max_form_size,omitempty"`

	// MaxResponseSize is the largest response body (decoded) read for ids,
	// in bytes; larger responses pass through but derive no event.
	// Default: 1 MiB.
	MaxResponseSize int64 `json:"max_response_size,omitempty"`

	// LookupTimeout bounds the lookup made before forwarding a /remove to
	// learn the value being removed, and each /query poll for Processed
	// sent through this handler's chain. Default: 10s.
	LookupTimeout caddy.Duration `json:"lookup_timeout,omitempty"`

	rules  *events.RuleSet
	limits events.Limits
	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers." + appID,
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision builds the rule table and finds (or creates with defaults) the
// echo3d_webhooks app.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	rules, err := events.NewRuleSet(events.DefaultRules(), events.Overrides{
		DeleteParams: h.DeleteParams,
		EditParams:   h.EditParams,
	})
	if err != nil {
		return fmt.Errorf("building echo3D rules: %w", err)
	}
	h.rules = rules
	if h.MaxResponseSize <= 0 {
		h.MaxResponseSize = defaultMaxResponseSize
	}
	if h.LookupTimeout <= 0 {
		h.LookupTimeout = caddy.Duration(defaultLookupTimeout)
	}
	h.limits = events.Limits{MaxFieldBytes: h.MaxFieldSize, MaxFormBytes: h.MaxFormSize}
	app, err := ctx.App(appID)
	if err != nil {
		return fmt.Errorf("loading %s app: %w", appID, err)
	}
	h.app = app.(*App)
	return nil
}

// Validate checks the options.
func (h *Handler) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"max_field_size", h.MaxFieldSize},
		{"max_form_size", h.MaxFormSize},
		{"max_response_size", h.MaxResponseSize},
	} {
		if f.v < 0 {
			return fmt.Errorf("%s: must not be negative, got %d", f.name, f.v)
		}
	}
	return nil
}

// ServeHTTP forwards the request through next and, when a rule matches and
// the upstream answered with success, derives and enqueues events.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.offerPollRoute(r, next)
	rule := h.rules.Match(r.Method, r.URL.Path)
	if rule == nil || h.skipObserve(rule) {
		return next.ServeHTTP(w, r)
	}

	var params events.Params
	params.AddQuery(r.URL.RawQuery)
	contentType := r.Header.Get("Content-Type")
	hasBody := r.Body != nil && r.Body != http.NoBody

	var prior string
	var tee *events.BodyTee
	preReadWhole := true
	switch {
	case rule.NeedsLookup():
		if hasBody {
			replay, whole, err := events.PreRead(r.Body, contentType, h.limits, &params)
			r.Body = replay
			preReadWhole = whole
			if err != nil {
				h.debug("reading request parameters", zap.String("rule", rule.Name), zap.Error(err))
			}
		}
		prior = h.lookup(r, rule, &params, next)
	case hasBody:
		tee = events.NewBodyTee(r.Body, contentType, h.limits)
		r.Body = tee
	}

	cw := newCaptureWriter(w, rule.NeedsResponseBody() || h.observing(rule, &params, hasBody), int(h.MaxResponseSize))
	defer cw.release()
	complete := true
	finished := false
	if tee != nil {
		// Runs even when the proxy aborts with a panic, so the parser
		// goroutine never outlives the request.
		defer func() {
			if !finished {
				tee.Finish(&params)
			}
		}()
	}

	err := next.ServeHTTP(cw, r)
	if tee != nil {
		complete = tee.Finish(&params)
		finished = true
	}
	if err != nil {
		return err
	}
	if rule.Observe {
		body, bodyComplete := cw.body()
		h.observeResponse(&params, cw.status, body, bodyComplete)
		return nil
	}
	success := cw.status >= 200 && cw.status <= 299
	if (!complete || !preReadWhole) && success {
		h.skip(skipRequestIncomplete, rule)
	}

	body, bodyComplete := cw.body()
	payloads := rule.Derive(events.Exchange{
		Params:       &params,
		Status:       cw.status,
		Body:         body,
		BodyComplete: bodyComplete,
		PriorValue:   prior,
	})
	if len(payloads) == 0 {
		if success && rule.NeedsResponseBody() {
			if reason := responseSkipReason(rule, cw, body, bodyComplete); reason != "" {
				h.skip(reason, rule, zap.Int("status", cw.status))
			}
		}
		return nil
	}
	if !validUTF8(payloads) {
		h.skip(skipInvalidUTF8, rule, zap.String("event", string(payloads[0].Event)))
		return nil
	}
	n, qerr := h.app.enqueue(payloads)
	h.trackWatches(r, next, &params, payloads, qerr == nil)
	if qerr != nil {
		// Our trouble never fails the client's request; the loss is loud.
		h.logger.Error("events lost: could not write them to the outbox",
			zap.String("rule", rule.Name),
			zap.Int("events", len(payloads)),
			zap.String("event", string(payloads[0].Event)),
			zap.Uint64("calls_lost_since_start", countSkip(skipStoreError)),
			zap.Error(qerr))
		return nil
	}
	if c := h.logger.Check(zapcore.DebugLevel, "events derived"); c != nil {
		c.Write(zap.String("rule", rule.Name), zap.Int("events", len(payloads)),
			zap.String("event", string(payloads[0].Event)), zap.Int("deliveries", n))
	}
	return nil
}

// lookup learns the value a /remove is about to remove, by sending a read
// with the caller's own parameters through the rest of the handler chain
// (the same upstream and proxy settings as the request itself). It returns
// "" when the value cannot be learned.
func (h *Handler) lookup(r *http.Request, rule *events.Rule, params *events.Params, next caddyhttp.Handler) string {
	path, query, ok := rule.LookupQuery(params)
	if !ok {
		return ""
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(h.LookupTimeout))
	defer cancel()
	sub := r.Clone(ctx)
	sub.Method = http.MethodGet
	sub.URL.Path = path
	sub.URL.RawPath = ""
	sub.URL.RawQuery = query.Encode()
	// The query carries the caller's credentials: keep them out of
	// RequestURI, which only logs read (reverse_proxy's debug log prints it);
	// the upstream request is built from URL.
	sub.RequestURI = sub.URL.EscapedPath()
	sub.Body = http.NoBody
	sub.ContentLength = 0
	sub.TransferEncoding = nil
	for _, name := range []string{"Content-Type", "Content-Length", "Accept-Encoding", "Expect", "Transfer-Encoding"} {
		sub.Header.Del(name)
	}
	rec := newLookupRecorder(maxLookupBody)
	if err := next.ServeHTTP(rec, sub); err != nil {
		h.debug("lookup failed", zap.String("rule", rule.Name), zap.String("path", path), zap.Error(err))
		return ""
	}
	if rec.status < 200 || rec.status > 299 || rec.truncated {
		h.debug("lookup found no value", zap.String("rule", rule.Name), zap.String("path", path), zap.Int("status", rec.status))
		return ""
	}
	body := rec.body.Bytes()
	if enc := strings.ToLower(rec.header.Get("Content-Encoding")); enc == "gzip" || enc == "x-gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return ""
		}
		defer zr.Close()
		body, err = io.ReadAll(io.LimitReader(zr, maxLookupBody))
		if err != nil {
			return ""
		}
	}
	return string(body)
}

// debug logs at debug level without cost when debug is off. Fields must
// never carry parameter values (they may hold credentials).
func (h *Handler) debug(msg string, fields ...zap.Field) {
	if c := h.logger.Check(zapcore.DebugLevel, msg); c != nil {
		c.Write(fields...)
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
