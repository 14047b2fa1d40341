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

// serve routes /echo3d/... requests.
func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/echo3d/"), "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "webhooks":
		switch r.Method {
		case http.MethodGet:
			return a.withApp(w, r, a.list)
		case http.MethodPost:
			return a.withApp(w, r, a.create)
		}
		return methodNotAllowed(r, "GET, POST")
	case len(parts) == 2 && parts[0] == "webhooks" && parts[1] != "":
		id := parts[1]
		switch r.Method {
		case http.MethodGet:
			return a.withApp(w, r, func(w http.ResponseWriter, r *http.Request, app *App) error { return a.get(w, app, id) })
		case http.MethodPut:
			return a.withApp(w, r, func(w http.ResponseWriter, r *http.Request, app *App) error { return a.replace(w, r, app, id) })
		case http.MethodDelete:
			return a.withApp(w, r, func(w http.ResponseWriter, r *http.Request, app *App) error { return a.remove(w, app, id) })
		}
		return methodNotAllowed(r, "GET, PUT, DELETE")
	case len(parts) == 3 && parts[0] == "webhooks" && parts[1] != "":
		id := parts[1]
		switch parts[2] {
		case "deliveries":
			if r.Method != http.MethodGet {
				return methodNotAllowed(r, "GET")
			}
			return a.withApp(w, r, func(w http.ResponseWriter, r *http.Request, app *App) error { return a.deliveries(w, r, app, id) })
		case "test":
			if r.Method != http.MethodPost {
				return methodNotAllowed(r, "POST")
			}
			return a.withApp(w, r, func(w http.ResponseWriter, r *http.Request, app *App) error { return a.test(w, r, app, id) })
		case "rotate-secret":
			if r.Method != http.MethodPost {
				return methodNotAllowed(r, "POST")
			}
			return a.withApp(w, r, func(w http.ResponseWriter, r *http.Request, app *App) error { return a.rotate(w, r, app, id) })
		}
	case len(parts) == 3 && parts[0] == "deliveries" && parts[1] != "" && parts[2] == "redeliver":
		if r.Method != http.MethodPost {
			return methodNotAllowed(r, "POST")
		}
		id := parts[1]
		return a.withApp(w, r, func(w http.ResponseWriter, r *http.Request, app *App) error { return a.redeliver(w, app, id) })
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

// webhookView is a webhook as the admin API shows it.
type webhookView struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	URL            string    `json:"url"`
	Description    string    `json:"description"`
	Triggers       []string  `json:"triggers"`
	APIKey         string    `json:"apiKey"`
	Enabled        bool      `json:"enabled"`
	Secret         string    `json:"secret,omitempty"`
	CreatedAt      time.Time `json:"createdAt"`
	UpdatedAt      time.Time `json:"updatedAt"`
	DisabledReason string    `json:"disabledReason,omitempty"`
}

func view(w store.Webhook, withSecret bool) webhookView {
	v := webhookView{
		ID:             w.ID,
		Name:           w.Name,
		URL:            w.URL,
		Description:    w.Description,
		Triggers:       w.Triggers,
		APIKey:         w.APIKey,
		Enabled:        w.Enabled,
		CreatedAt:      w.CreatedAt,
		UpdatedAt:      w.UpdatedAt,
		DisabledReason: w.DisabledReason,
	}
	if v.Triggers == nil {
		v.Triggers = []string{}
	}
	if withSecret {
		v.Secret = w.Secret
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
		return apiError(http.StatusInternalServerError, "listing webhooks: %v", err)
	}
	out := make([]webhookView, 0, len(hooks))
	for _, h := range hooks {
		out = append(out, view(h, false))
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
	if err := st.CreateWebhook(hook); err != nil {
		return apiError(http.StatusInternalServerError, "creating webhook: %v", err)
	}
	a.logger.Info("webhook created", zap.String("webhook_id", hook.ID), zap.String("api_key", hook.APIKey), zap.Strings("triggers", hook.Triggers))
	return writeJSON(w, http.StatusCreated, view(hook, true))
}

func (a *adminAPI) get(w http.ResponseWriter, app *App, id string) error {
	hook, err := a.load(app, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, view(hook, true))
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
		return apiError(http.StatusInternalServerError, "updating webhook: %v", err)
	}
	if hook.Enabled && !wasEnabled {
		app.dispatcher.Notify()
	}
	a.logger.Info("webhook updated", zap.String("webhook_id", hook.ID))
	return writeJSON(w, http.StatusOK, view(hook, true))
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
		return apiError(http.StatusInternalServerError, "deleting webhook: %v", err)
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
		return apiError(http.StatusInternalServerError, "reading delivery: %v", err)
	}
	ev, err := st.GetEvent(d.EventID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiError(http.StatusNotFound, "the event of delivery %s has expired", id)
		}
		return apiError(http.StatusInternalServerError, "reading event: %v", err)
	}
	nd, err := st.EnqueueDelivery(ev, d.WebhookID, time.Now())
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiError(http.StatusNotFound, "webhook %s of delivery %s not found", d.WebhookID, id)
		}
		return apiError(http.StatusInternalServerError, "enqueueing redelivery: %v", err)
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
	ev := store.Event{ID: newID("evt_"), Trigger: string(p.Event), APIKey: hook.APIKey, Payload: body, CreatedAt: now}
	d, err := st.EnqueueDelivery(ev, hook.ID, now)
	if err != nil {
		return apiError(http.StatusInternalServerError, "enqueueing test event: %v", err)
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
		return apiError(http.StatusInternalServerError, "updating webhook: %v", err)
	}
	a.logger.Info("webhook secret rotated", zap.String("webhook_id", hook.ID), zap.Duration("overlap", overlap))
	return writeJSON(w, http.StatusOK, view(hook, true))
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
		return store.Webhook{}, apiError(http.StatusInternalServerError, "reading webhook: %v", err)
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
			return apiError(http.StatusBadRequest, "%s: must be %s", typeErr.Field, jsonKind(typeErr.Type.String()))
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

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "an array of strings"
	case strings.Contains(goType, "bool"):
		return "a boolean"
	}
	return "a string"
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
