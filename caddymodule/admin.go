package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/sink"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// Limits of the admin API's input.
const (
	maxAdminBody      = 64 << 10
	maxNameLen        = 200
	maxDescriptionLen = 2000
	maxURLLen         = 2048
	maxAPIKeyLen      = 256
	urlCheckTimeout   = 5 * time.Second
	maxSecretOverlap  = 7 * 24 * time.Hour
)

// adminAPI serves the webhook management routes under /echo3d/ on Caddy's
// admin endpoint.
type adminAPI struct {
	ctx    caddy.Context
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api." + appID,
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Provision keeps the config's context; the app is looked up per request
// because admin modules are provisioned before the apps of their config.
func (a *adminAPI) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger(a)
	return nil
}

// Routes returns the admin routes.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: "/echo3d/",
		Handler: caddy.AdminHandlerFunc(a.serve),
	}}
}

// adminRoute is one operation of the admin API. Pattern is the full path
// with "{id}" standing for one non-empty segment, the same template as the
// paths of docs/openapi.json (a test keeps the two in step).
type adminRoute struct {
	Method  string
	Pattern string
	handle  func(a *adminAPI, w http.ResponseWriter, r *http.Request, app *App, id string) error
}

// adminRoutes lists every operation serve answers, in documentation order.
var adminRoutes = []adminRoute{
	{http.MethodGet, "/echo3d/webhooks", func(a *adminAPI, w http.ResponseWriter, r *http.Request, app *App, _ string) error {
		return a.list(w, r, app)
	}},
	{http.MethodPost, "/echo3d/webhooks", func(a *adminAPI, w http.ResponseWriter, r *http.Request, app *App, _ string) error {
		return a.create(w, r, app)
	}},
	{http.MethodGet, "/echo3d/webhooks/{id}", func(a *adminAPI, w http.ResponseWriter, _ *http.Request, app *App, id string) error {
		return a.get(w, app, id)
	}},
	{http.MethodPut, "/echo3d/webhooks/{id}", func(a *adminAPI, w http.ResponseWriter, r *http.Request, app *App, id string) error {
		return a.replace(w, r, app, id)
	}},
	{http.MethodDelete, "/echo3d/webhooks/{id}", func(a *adminAPI, w http.ResponseWriter, _ *http.Request, app *App, id string) error {
		return a.remove(w, app, id)
	}},
	{http.MethodGet, "/echo3d/webhooks/{id}/deliveries", func(a *adminAPI, w http.ResponseWriter, r *http.Request, app *App, id string) error {
		return a.deliveries(w, r, app, id)
	}},
	{http.MethodPost, "/echo3d/webhooks/{id}/test", func(a *adminAPI, w http.ResponseWriter, r *http.Request, app *App, id string) error {
		return a.test(w, r, app, id)
	}},
	{http.MethodPost, "/echo3d/webhooks/{id}/rotate-secret", func(a *adminAPI, w http.ResponseWriter, r *http.Request, app *App, id string) error {
		return a.rotate(w, r, app, id)
	}},
	{http.MethodPost, "/echo3d/deliveries/{id}/redeliver", func(a *adminAPI, w http.ResponseWriter, _ *http.Request, app *App, id string) error {
		return a.redeliver(w, app, id)
	}},
}

// match reports whether path (leading, trailing and doubled slashes aside
// at the ends) fits the route's pattern, and returns the {id} segment.
func (rt adminRoute) match(path string) (id string, ok bool) {
	got := strings.Split(strings.Trim(path, "/"), "/")
	want := strings.Split(strings.Trim(rt.Pattern, "/"), "/")
	if len(got) != len(want) {
		return "", false
	}
	for i, seg := range want {
		switch {
		case seg == "{id}" && got[i] != "":
			id = got[i]
		case seg != got[i]:
			return "", false
		}
	}
	return id, true
}

// serve routes /echo3d/... requests through adminRoutes: 405 when the path
// is known but not the method, 404 when the path is unknown.
func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	var allowed []string
	for _, rt := range adminRoutes {
		id, ok := rt.match(r.URL.Path)
		if !ok {
			continue
		}
		if r.Method != rt.Method {
			allowed = append(allowed, rt.Method)
			continue
		}
		return a.withApp(w, r, func(w http.ResponseWriter, r *http.Request, app *App) error {
			return rt.handle(a, w, r, app, id)
		})
	}
	if len(allowed) > 0 {
		return methodNotAllowed(r, strings.Join(allowed, ", "))
	}
	return apiError(http.StatusNotFound, "no such route: %s %s", r.Method, r.URL.Path)
}

// withApp finds this config's echo3d_webhooks app and calls fn with it.
func (a *adminAPI) withApp(w http.ResponseWriter, r *http.Request, fn func(http.ResponseWriter, *http.Request, *App) error) error {
	v, err := a.ctx.AppIfConfigured(appID)
	if err != nil {
		return apiError(http.StatusServiceUnavailable,
			"the %s app is not running: add the echo3d_webhooks directive to a site or the echo3d_webhooks global option", appID)
	}
	return fn(w, r, v.(*App))
}

// webhookInput is the body of create and replace requests.
type webhookInput struct {
	Name        *string   `json:"name"`
	URL         *string   `json:"url"`
	Description *string   `json:"description"`
	Triggers    *[]string `json:"triggers"`
	APIKey      *string   `json:"apiKey"`
	Enabled     *bool     `json:"enabled"`
}

// webhookView is a webhook as the admin API shows it: the stored record
// without the rotated-out secrets, and without the secret where asked,
// with what the delivery system knows of its receiver.
type webhookView struct {
	store.Webhook
	// PreviousSecrets shadows the stored field (the shallower field wins
	// in encoding/json) and stays nil, so rotated-out secrets are never
	// shown.
	PreviousSecrets []store.PreviousSecret `json:"previousSecrets,omitempty"`
	// Health tells an operator why deliveries may not be flowing.
	Health healthView `json:"health"`
}

// healthView is a webhook's store.Health as the admin API shows it.
type healthView struct {
	// Breaker is "closed" (deliveries flow) or "open" (recent attempts
	// mostly failed: only a probe is sent, at HoldUntil).
	Breaker string `json:"breaker"`
	// HoldUntil: no delivery is attempted before this time (the open
	// breaker's next probe, or a receiver's Retry-After).
	HoldUntil time.Time `json:"holdUntil,omitzero"`
	// Pause is the open breaker's current pause between probes, as a Go
	// duration ("1m0s").
	Pause string `json:"pause,omitempty"`
	// FailingSince is the first failed attempt since the last success.
	FailingSince time.Time `json:"failingSince,omitzero"`
	// LastFailureAt is the latest failed attempt (to a minute).
	LastFailureAt time.Time `json:"lastFailureAt,omitzero"`
	// DisabledAt is when the delivery system disabled the webhook (see
	// disabledReason); enabling it clears this.
	DisabledAt time.Time `json:"disabledAt,omitzero"`
}

// healthOf returns the health of the webhook with that ID as st keeps it;
// st may be nil (the zero health).
func healthOf(st *store.Store, id string) healthView {
	var h store.Health
	if st != nil {
		h = st.Health(id)
	}
	v := healthView{Breaker: "closed", HoldUntil: h.HoldUntil, FailingSince: h.FailingSince, LastFailureAt: h.LastFailureAt, DisabledAt: h.DisabledAt}
	if h.Breaker == store.BreakerOpen {
		v.Breaker = "open"
	}
	if h.Pause > 0 {
		v.Pause = h.Pause.String()
	}
	return v
}

// view returns the webhook as the admin API shows it; st gives its health.
func view(w store.Webhook, st *store.Store, withSecret bool) webhookView {
	v := webhookView{Webhook: w, Health: healthOf(st, w.ID)}
	if v.Triggers == nil {
		v.Triggers = []string{}
	}
	if !withSecret {
		v.Secret = ""
	}
	return v
}

func (a *adminAPI) list(w http.ResponseWriter, r *http.Request, app *App) error {
	st, err := app.store()
	if err != nil {
		return storeUnavailable(err)
	}
	hooks, err := st.ListWebhooks(r.URL.Query().Get("apiKey"))
	if err != nil {
		return storeFailure("listing webhooks", err)
	}
	out := make([]webhookView, 0, len(hooks))
	for _, h := range hooks {
		out = append(out, view(h, st, false))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *adminAPI) create(w http.ResponseWriter, r *http.Request, app *App) error {
	var in webhookInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	var hook store.Webhook
	if err := a.apply(r.Context(), app, &hook, in, true); err != nil {
		return err
	}
	secret, err := sink.NewSecret()
	if err != nil {
		return apiError(http.StatusInternalServerError, "generating secret: %v", err)
	}
	now := time.Now().UTC()
	hook.ID = newID("wh_")
	hook.Secret = secret
	hook.CreatedAt = now
	hook.UpdatedAt = now
	st, err := app.store()
	if err != nil {
		return storeUnavailable(err)
	}
	createMu.Lock()
	defer createMu.Unlock()
	if err := collectionRoom(app, st, hook.APIKey); err != nil {
		return err
	}
	if err := st.CreateWebhook(hook); err != nil {
		return storeFailure("creating webhook", err)
	}
	a.logger.Info("webhook created", zap.String("webhook_id", hook.ID), zap.String("api_key", hook.APIKey), zap.Strings("triggers", hook.Triggers))
	return writeJSON(w, http.StatusCreated, view(hook, st, true))
}

func (a *adminAPI) get(w http.ResponseWriter, app *App, id string) error {
	hook, err := a.load(app, id)
	if err != nil {
		return err
	}
	st, _ := app.store() // a.load read it: a failure now shows the zero health
	return writeJSON(w, http.StatusOK, view(hook, st, true))
}

func (a *adminAPI) replace(w http.ResponseWriter, r *http.Request, app *App, id string) error {
	hook, err := a.load(app, id)
	if err != nil {
		return err
	}
	var in webhookInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	if in.APIKey != nil && *in.APIKey != hook.APIKey {
		return apiError(http.StatusBadRequest, "apiKey: cannot be changed; create a new webhook for another collection")
	}
	in.APIKey = &hook.APIKey
	if in.Description == nil {
		empty := ""
		in.Description = &empty
	}
	wasEnabled := hook.Enabled
	if err := a.apply(r.Context(), app, &hook, in, false); err != nil {
		return err
	}
	if hook.Enabled && !wasEnabled {
		hook.DisabledReason = ""
	}
	hook.UpdatedAt = time.Now().UTC()
	st, err := app.store()
	if err != nil {
		return storeUnavailable(err)
	}
	if err := st.UpdateWebhook(hook); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiError(http.StatusNotFound, "webhook %s not found", id)
		}
		return storeFailure("updating webhook", err)
	}
	if hook.Enabled && !wasEnabled {
		app.dispatcher.Notify()
	}
	a.logger.Info("webhook updated", zap.String("webhook_id", hook.ID))
	return writeJSON(w, http.StatusOK, view(hook, st, true))
}

func (a *adminAPI) remove(w http.ResponseWriter, app *App, id string) error {
	st, err := app.store()
	if err != nil {
		return storeUnavailable(err)
	}
	if err := st.DeleteWebhook(id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiError(http.StatusNotFound, "webhook %s not found", id)
		}
		return storeFailure("deleting webhook", err)
	}
	a.logger.Info("webhook deleted", zap.String("webhook_id", id))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *adminAPI) deliveries(w http.ResponseWriter, r *http.Request, app *App, id string) error {
	if _, err := a.load(app, id); err != nil {
		return err
	}
	q := r.URL.Query()
	limit := 50
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			return apiError(http.StatusBadRequest, "limit: must be an integer from 1 to 500, got %q", s)
		}
		limit = n
	}
	st, err := app.store()
	if err != nil {
		return storeUnavailable(err)
	}
	attempts, next, err := st.ListAttempts(id, q.Get("cursor"), limit)
	if err != nil {
		return apiError(http.StatusBadRequest, "cursor: %v", err)
	}
	if attempts == nil {
		attempts = []store.Attempt{}
	}
	return writeJSON(w, http.StatusOK, struct {
		Attempts   []store.Attempt `json:"attempts"`
		NextCursor string          `json:"nextCursor,omitempty"`
	}{attempts, next})
}

func (a *adminAPI) redeliver(w http.ResponseWriter, app *App, id string) error {
	st, err := app.store()
	if err != nil {
		return storeUnavailable(err)
	}
	d, err := st.GetDelivery(id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiError(http.StatusNotFound, "delivery %s not found", id)
		}
		return storeFailure("reading delivery", err)
	}
	ev, err := st.GetEvent(d.EventID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiError(http.StatusNotFound, "the event of delivery %s has expired", id)
		}
		return storeFailure("reading event", err)
	}
	nd, err := st.EnqueueDelivery(ev, d.WebhookID, time.Now())
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiError(http.StatusNotFound, "webhook %s of delivery %s not found", d.WebhookID, id)
		}
		return storeFailure("enqueueing redelivery", err)
	}
	app.dispatcher.Notify()
	return writeJSON(w, http.StatusAccepted, nd)
}

// testInput optionally picks the trigger a test event imitates.
type testInput struct {
	Event string `json:"event"`
}

func (a *adminAPI) test(w http.ResponseWriter, r *http.Request, app *App, id string) error {
	hook, err := a.load(app, id)
	if err != nil {
		return err
	}
	var in testInput
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &in); err != nil {
			return err
		}
	}
	p := events.Payload{Event: "Test", APIKey: hook.APIKey}
	if in.Event != "" {
		if !events.ValidTrigger(in.Event) {
			return apiError(http.StatusBadRequest, "event: %q is not a trigger name", in.Event)
		}
		p.Event = events.Trigger(in.Event)
		p.EntryIDs = []string{"test-entry"}
	}
	body, err := json.Marshal(p)
	if err != nil {
		return apiError(http.StatusInternalServerError, "encoding test payload: %v", err)
	}
	st, err := app.store()
	if err != nil {
		return storeUnavailable(err)
	}
	now := time.Now()
	ev := store.Event{ID: store.NewEventID(), Trigger: string(p.Event), APIKey: hook.APIKey, Payload: body, CreatedAt: now}
	d, err := st.EnqueueDelivery(ev, hook.ID, now)
	if err != nil {
		return storeFailure("enqueueing test event", err)
	}
	app.dispatcher.Notify()
	return writeJSON(w, http.StatusAccepted, d)
}

// rotate replaces a webhook's secret. The old secret keeps signing next to
// the new one for the overlap (query parameter "overlap", a Go duration;
// default the app's secret_overlap), so receivers can switch without
// rejecting deliveries.
func (a *adminAPI) rotate(w http.ResponseWriter, r *http.Request, app *App, id string) error {
	hook, err := a.load(app, id)
	if err != nil {
		return err
	}
	overlap := time.Duration(app.SecretOverlap)
	if s := r.URL.Query().Get("overlap"); s != "" {
		d, err := caddy.ParseDuration(s)
		if err != nil || d < 0 || d > maxSecretOverlap {
			return apiError(http.StatusBadRequest, "overlap: must be a duration from 0s to %s, got %q", maxSecretOverlap, s)
		}
		overlap = d
	}
	secret, err := sink.NewSecret()
	if err != nil {
		return apiError(http.StatusInternalServerError, "generating secret: %v", err)
	}
	now := time.Now().UTC()
	kept := hook.PreviousSecrets[:0]
	for _, p := range hook.PreviousSecrets {
		if now.Before(p.ExpiresAt) {
			kept = append(kept, p)
		}
	}
	if overlap > 0 {
		kept = append(kept, store.PreviousSecret{Secret: hook.Secret, ExpiresAt: now.Add(overlap)})
	}
	hook.PreviousSecrets = kept
	hook.Secret = secret
	hook.UpdatedAt = now
	st, err := app.store()
	if err != nil {
		return storeUnavailable(err)
	}
	if err := st.UpdateWebhook(hook); err != nil {
		return storeFailure("updating webhook", err)
	}
	a.logger.Info("webhook secret rotated", zap.String("webhook_id", hook.ID), zap.Duration("overlap", overlap))
	return writeJSON(w, http.StatusOK, view(hook, st, true))
}

// load reads a webhook or answers 404.
func (a *adminAPI) load(app *App, id string) (store.Webhook, error) {
	st, err := app.store()
	if err != nil {
		return store.Webhook{}, storeUnavailable(err)
	}
	hook, err := st.GetWebhook(id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return store.Webhook{}, apiError(http.StatusNotFound, "webhook %s not found", id)
		}
		return store.Webhook{}, storeFailure("reading webhook", err)
	}
	return hook, nil
}

// apply validates in and copies it into hook. On create every required field
// must be present; on replace name, url and triggers must be.
func (a *adminAPI) apply(ctx context.Context, app *App, hook *store.Webhook, in webhookInput, creating bool) error {
	if in.Name == nil || strings.TrimSpace(*in.Name) == "" {
		return apiError(http.StatusBadRequest, "name: required")
	}
	if len(*in.Name) > maxNameLen {
		return apiError(http.StatusBadRequest, "name: longer than %d bytes", maxNameLen)
	}
	if in.URL == nil || *in.URL == "" {
		return apiError(http.StatusBadRequest, "url: required")
	}
	if len(*in.URL) > maxURLLen {
		return apiError(http.StatusBadRequest, "url: longer than %d bytes", maxURLLen)
	}
	cctx, cancel := context.WithTimeout(ctx, urlCheckTimeout)
	defer cancel()
	if err := sink.CheckURL(cctx, *in.URL, app.policy, nil); err != nil {
		return apiError(http.StatusBadRequest, "url: %v", err)
	}
	if in.Description != nil && len(*in.Description) > maxDescriptionLen {
		return apiError(http.StatusBadRequest, "description: longer than %d bytes", maxDescriptionLen)
	}
	if in.Triggers == nil || len(*in.Triggers) == 0 {
		return apiError(http.StatusBadRequest, "triggers: at least one trigger is required (one of %s)", triggerList())
	}
	var triggers []string
	for _, t := range *in.Triggers {
		if !events.ValidTrigger(t) {
			return apiError(http.StatusBadRequest, "triggers: %q is not a trigger name (one of %s)", t, triggerList())
		}
		if !contains(triggers, t) {
			triggers = append(triggers, t)
		}
	}
	if creating {
		if in.APIKey == nil || strings.TrimSpace(*in.APIKey) == "" {
			return apiError(http.StatusBadRequest, "apiKey: required (the collection key whose events this webhook receives)")
		}
		if len(*in.APIKey) > maxAPIKeyLen {
			return apiError(http.StatusBadRequest, "apiKey: longer than %d bytes", maxAPIKeyLen)
		}
		hook.APIKey = *in.APIKey
		hook.Enabled = true
	}
	hook.Name = *in.Name
	hook.URL = *in.URL
	if in.Description != nil {
		hook.Description = *in.Description
	}
	hook.Triggers = triggers
	if in.Enabled != nil {
		hook.Enabled = *in.Enabled
	}
	return nil
}

func triggerList() string {
	names := make([]string, len(events.AllTriggers))
	for i, t := range events.AllTriggers {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// decodeBody reads a JSON object strictly: bounded size, no unknown fields,
// nothing after the object.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return apiError(http.StatusRequestEntityTooLarge, "body: larger than %d bytes", maxAdminBody)
		case errors.As(err, &typeErr):
			return typeError(v, typeErr)
		case errors.Is(err, io.EOF):
			return apiError(http.StatusBadRequest, "body: a JSON object is required")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return apiError(http.StatusBadRequest, "%s: unknown field", strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
		}
		return apiError(http.StatusBadRequest, "body: invalid JSON: %v", err)
	}
	if dec.More() {
		return apiError(http.StatusBadRequest, "body: unexpected data after the JSON object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func storeUnavailable(err error) error {
	return apiError(http.StatusServiceUnavailable, "webhook store unavailable: %v", err)
}

func methodNotAllowed(r *http.Request, allowed string) error {
	return apiError(http.StatusMethodNotAllowed, "method %s not allowed; use %s", r.Method, allowed)
}

// Interface guards
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)
