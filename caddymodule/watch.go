package caddymodule

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/watch"
)

// This file is the Caddy side of Processed for uploads answered before
// echo3D finished processing (watch package): the per-store watch hub that
// survives config reloads, the credentials held in memory only, the polls
// sent as sub-requests through the handler chain, and passive detection in
// /query responses.

// The echo3D parameters a poll sends. The collection key is not a secret
// (it is every payload's apiKey); the others are, and are only ever held in
// memory and sent in a POST body, never in a URL.
const (
	pollPath     = "/query"
	paramKey     = "key"
	paramEntry   = "entry"
	paramEmail   = "email"
	paramUserKey = "userKey"
	paramSecKey  = "secKey"
)

// The prefix of watch IDs, the User-Agent of polls (then the version), and
// how many polls run at once across all watches.
const (
	watchIDPrefix  = "wt_"
	pollUserAgent  = "caddy-echo3d-webhooks/"
	pollConcurrent = 4
)

// Collection holds the echo3D credentials of one collection, with which
// the plugin polls for Processed when the uploader's own credentials are
// not in memory, i.e. for uploads made before a restart. Values may be
// {env.*} placeholders, expanded at provisioning; prefer them, since a
// literal value sits in Caddy's config (and its autosave file).
type Collection struct {
	// Email is the account e-mail ("email" parameter).
	Email string `json:"email,omitempty"`
	// UserKey is the personal authentication key ("userKey" parameter).
	UserKey string `json:"user_key,omitempty"`
	// SecKey is the collection's security key ("secKey" parameter).
	SecKey string `json:"sec_key,omitempty"`
}

// credentials are the secret parameters of a poll. They live in memory
// only; String keeps them out of logs and error messages by accident.
type credentials struct {
	email, userKey, secKey string
}

// String redacts the credentials.
func (credentials) String() string { return "[redacted]" }

// GoString redacts the credentials.
func (credentials) GoString() string { return "[redacted]" }

// orElse fills the fields c lacks from fallback.
func (c credentials) orElse(fallback credentials) credentials {
	if c.email == "" {
		c.email = fallback.email
	}
	if c.userKey == "" {
		c.userKey = fallback.userKey
	}
	if c.secKey == "" {
		c.secKey = fallback.secKey
	}
	return c
}

// addTo sets the non-empty credentials in form.
func (c credentials) addTo(form url.Values) {
	for name, v := range map[string]string{paramEmail: c.email, paramUserKey: c.userKey, paramSecKey: c.secKey} {
		if v != "" {
			form.Set(name, v)
		}
	}
}

// watchHubs holds one *watchHub per store, under the same keys as stores:
// the watches, their in-memory credentials and the poll scheduler outlive
// any single config, so a `caddy reload` neither loses a caller's
// credentials nor runs two schedulers over the same watches.
var watchHubs = caddy.NewUsagePool()

// watchHub owns the watch.Manager of one store and implements its Hooks
// through whichever config is running (the last one started).
type watchHub struct {
	mgr *watch.Manager

	mu     sync.Mutex
	creds  map[string]credentials // by watch ID; memory only
	apps   []*App                 // started configs, oldest first
	loaded bool
}

// newWatchHub returns a hub whose manager persists through h.
func newWatchHub(h *storeHandle, logger *zap.Logger) *watchHub {
	hb := &watchHub{creds: map[string]credentials{}}
	hb.mgr = watch.New(watch.Config{
		Hooks:       hb,
		Store:       lazyWatchStore{h},
		Logger:      logger,
		Concurrency: pollConcurrent,
	})
	return hb
}

// attach makes a the running config: its settings, logger and routes are
// used from now on. The first attach loads the stored watches (after a
// restart) and starts the scheduler. The watches kept (restored, or
// carried over a reload) have no route in a's handler chains yet: a asks
// its handlers for one through each of their hosts.
func (hb *watchHub) attach(a *App) {
	hb.mu.Lock()
	hb.apps = append(hb.apps, a)
	first := !hb.loaded
	hb.loaded = true
	hb.mu.Unlock()
	hb.mgr.SetLogger(a.watches.logger)
	hb.mgr.SetSettings(a.watches.settings)
	if first {
		if err := hb.mgr.Load(); err != nil {
			a.watches.logger.Warn("could not load the watches of uploads awaiting processing; they will not emit Processed", zap.Error(err))
		}
	}
	for _, w := range hb.mgr.Watches() {
		a.watches.want(w.Host)
	}
	if first {
		hb.mgr.Start()
	}
}

// detach removes a; if it was the running config, the previous one (if
// any is still started) takes over.
func (hb *watchHub) detach(a *App) {
	hb.mu.Lock()
	i := slices.Index(hb.apps, a)
	if i < 0 {
		hb.mu.Unlock()
		return
	}
	wasCurrent := i == len(hb.apps)-1
	hb.apps = slices.Delete(hb.apps, i, i+1)
	var prev *App
	if n := len(hb.apps); wasCurrent && n > 0 {
		prev = hb.apps[n-1]
	}
	hb.mu.Unlock()
	if prev != nil {
		hb.mgr.SetLogger(prev.watches.logger)
		hb.mgr.SetSettings(prev.watches.settings)
		hb.mgr.Resume()
	}
}

// current returns the running config, or nil.
func (hb *watchHub) current() *App {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if n := len(hb.apps); n > 0 {
		return hb.apps[n-1]
	}
	return nil
}

func (hb *watchHub) putCreds(id string, c credentials) {
	hb.mu.Lock()
	hb.creds[id] = c
	hb.mu.Unlock()
}

func (hb *watchHub) getCreds(id string) (credentials, bool) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	c, ok := hb.creds[id]
	return c, ok
}

func (hb *watchHub) dropCreds(id string) {
	hb.mu.Lock()
	delete(hb.creds, id)
	hb.mu.Unlock()
}

// Poll asks the upstream, through the running config, whether w's entry
// is processed (watch.Hooks).
func (hb *watchHub) Poll(ctx context.Context, w watch.Watch) (bool, error) {
	a := hb.current()
	if a == nil {
		return false, fmt.Errorf("no running config: %w", watch.ErrCannotPoll)
	}
	c, live := hb.getCreds(w.ID)
	return a.watches.poll(ctx, w, c, live)
}

// Emit writes the Processed event of w to the outbox (watch.Hooks).
func (hb *watchHub) Emit(w watch.Watch) error {
	a := hb.current()
	if a == nil {
		return errors.New("no running config to emit Processed")
	}
	_, err := a.enqueue([]events.Payload{{
		Event:          events.Processed,
		APIKey:         w.APIKey,
		EntryIDs:       []string{w.EntryID},
		MetadataKeys:   []string{},
		MetadataValues: []string{},
	}})
	return err
}

// Ended forgets the credentials and routes of a watch that ended
// (watch.Hooks), counts it per reason for the whole process
// (watchesEnded; evictions also in the caddy_echo3d_webhooks_watches_evicted_total
// metric). The watch.Manager keeps its own counters (App.WatchStats) and
// logs give-ups and evictions at warn level.
func (hb *watchHub) Ended(w watch.Watch, reason watch.Reason) {
	hb.mu.Lock()
	delete(hb.creds, w.ID)
	apps := slices.Clone(hb.apps)
	hb.mu.Unlock()
	for _, a := range apps {
		a.watches.dropRoute(w.ID)
	}
	countWatchEnded(reason)
	if reason == watch.Evicted {
		initMetrics()
		metrics.evicted.Inc()
	}
}

// Destruct stops the scheduler once no config uses the store; the watches
// stay in Badger for the next start.
func (hb *watchHub) Destruct() error {
	hb.mgr.Close()
	return nil
}

// watchEndCounts counts the watches that ended per reason since the
// process started, across reloads, as a Prometheus counter would.
var watchEndCounts sync.Map // watch.Reason → *atomic.Uint64

// countWatchEnded counts one watch that ended for reason.
func countWatchEnded(reason watch.Reason) {
	c, _ := watchEndCounts.LoadOrStore(reason, new(atomic.Uint64))
	c.(*atomic.Uint64).Add(1)
}

// watchesEnded returns how many watches ended for reason since the process
// started (give-ups: watch.GaveUp; evictions beyond max_watches:
// watch.Evicted).
func watchesEnded(reason watch.Reason) uint64 {
	if c, ok := watchEndCounts.Load(reason); ok {
		return c.(*atomic.Uint64).Load()
	}
	return 0
}

// lazyWatchStore lets the manager reach the store through the shared
// handle, so it never holds a closed database.
type lazyWatchStore struct{ h *storeHandle }

func (s lazyWatchStore) st() (*store.Store, error) {
	if st := s.h.opened(); st != nil {
		return st, nil
	}
	return nil, errStoreNotOpen
}

// PutWatch stores w in the open store.
func (s lazyWatchStore) PutWatch(w watch.Watch) error {
	st, err := s.st()
	if err != nil {
		return err
	}
	return st.PutWatch(w)
}

// DeleteWatch deletes a watch from the open store.
func (s lazyWatchStore) DeleteWatch(id string) error {
	st, err := s.st()
	if err != nil {
		return err
	}
	return st.DeleteWatch(id)
}

// Watches lists the open store's watches.
func (s lazyWatchStore) Watches() ([]watch.Watch, error) {
	st, err := s.st()
	if err != nil {
		return nil, err
	}
	return st.Watches()
}

// appWatches is one config's part of watching: its settings, the
// credentials its Caddyfile configures, and the routes its handlers
// offered for polls.
type appWatches struct {
	hub         *watchHub
	hubKey      string
	settings    watch.Settings
	collections map[string]credentials
	logger      *zap.Logger

	mu         sync.Mutex
	routes     map[string]*pollRoute // by watch ID: the upload's own request
	hostRoutes map[string]*pollRoute // by lower-case Host: for watches without one
	wanted     map[string]bool       // hosts whose watches wait for a route
	wantRoutes atomic.Bool           // len(wanted) > 0, read on every request
}

// watchSettings returns the watch settings of the app's options.
func (a *App) watchSettings() watch.Settings {
	return watch.Settings{
		FirstInterval: time.Duration(a.ProcessedPollFirst),
		MaxInterval:   time.Duration(a.ProcessedPollMax),
		GiveUp:        time.Duration(a.ProcessedGiveUp),
		MaxWatches:    a.MaxWatches,
	}
}

// provisionWatches expands the configured credentials and takes a
// reference to the store's watch hub (creating it without starting it).
func (a *App) provisionWatches() error {
	repl := caddy.NewReplacer()
	cols := make(map[string]credentials, len(a.Collections))
	for key, c := range a.Collections {
		cols[key] = credentials{
			email:   repl.ReplaceKnown(c.Email, ""),
			userKey: repl.ReplaceKnown(c.UserKey, ""),
			secKey:  repl.ReplaceKnown(c.SecKey, ""),
		}
	}
	logger := a.logger.Named("watch")
	val, _, err := watchHubs.LoadOrNew(a.poolKey, func() (caddy.Destructor, error) {
		return newWatchHub(a.handle, logger), nil
	})
	if err != nil {
		return fmt.Errorf("loading watch hub %s: %w", a.poolKey, err)
	}
	a.watches = &appWatches{
		hub:         val.(*watchHub),
		hubKey:      a.poolKey,
		settings:    a.watchSettings().WithDefaults(),
		collections: cols,
		logger:      logger,
		routes:      map[string]*pollRoute{},
		hostRoutes:  map[string]*pollRoute{},
		wanted:      map[string]bool{},
	}
	return nil
}

// validateWatches checks the watch options.
func (a *App) validateWatches() error {
	if err := a.watchSettings().Validate(); err != nil {
		return fmt.Errorf("processed_poll/max_watches: %w", err)
	}
	for key := range a.Collections {
		if key == "" {
			return errors.New("collections: empty collection key")
		}
	}
	return nil
}

// startWatches makes this config the one that polls and emits.
func (a *App) startWatches() {
	if a.watches != nil {
		a.watches.hub.attach(a)
	}
}

// stopWatches hands polling back to the previous config, if any.
func (a *App) stopWatches() {
	if a.watches != nil {
		a.watches.hub.detach(a)
	}
}

// cleanupWatches releases this config's reference to the watch hub.
func (a *App) cleanupWatches() {
	if a.watches == nil || a.watches.hubKey == "" {
		return
	}
	key := a.watches.hubKey
	a.watches.hubKey = ""
	if _, err := watchHubs.Delete(key); err != nil {
		a.logger.Warn("releasing watch hub", zap.String("storage", key), zap.Error(err))
	}
}

// WatchStats returns the counters of the watches of uploads awaiting
// processing (shared by every config on the same store): how many are kept,
// polled, resolved, deleted, given up and evicted.
func (a *App) WatchStats() watch.Stats {
	if a.watches == nil {
		return watch.Stats{}
	}
	return a.watches.hub.mgr.Stats()
}

// poll polls for w through this config. live says whether the uploader's
// credentials c are in memory; without them the collection's configured
// credentials are needed.
func (aw *appWatches) poll(ctx context.Context, w watch.Watch, c credentials, live bool) (bool, error) {
	conf, configured := aw.collections[w.APIKey]
	if !live && !configured {
		return false, fmt.Errorf("no credentials for the collection: %w", watch.ErrCannotPoll)
	}
	c = c.orElse(conf)
	route := aw.route(w)
	if route == nil {
		aw.want(w.Host)
		return false, fmt.Errorf("no request through host %q yet: %w", w.Host, watch.ErrCannotPoll)
	}
	return route.poll(ctx, w, c)
}

// route returns the route to poll w through, or nil.
func (aw *appWatches) route(w watch.Watch) *pollRoute {
	aw.mu.Lock()
	defer aw.mu.Unlock()
	if r := aw.routes[w.ID]; r != nil {
		return r
	}
	return aw.hostRoutes[strings.ToLower(w.Host)]
}

// want asks the handlers for a route through host.
func (aw *appWatches) want(host string) {
	host = strings.ToLower(host)
	aw.mu.Lock()
	defer aw.mu.Unlock()
	if aw.hostRoutes[host] != nil {
		return
	}
	aw.wanted[host] = true
	aw.wantRoutes.Store(true)
}

// offer takes r and next as the route for r's host when watches wait for
// one, and has them poll at once.
func (aw *appWatches) offer(h *Handler, r *http.Request, next caddyhttp.Handler) {
	host := strings.ToLower(r.Host)
	aw.mu.Lock()
	if !aw.wanted[host] {
		aw.mu.Unlock()
		return
	}
	delete(aw.wanted, host)
	aw.hostRoutes[host] = newPollRoute(h, r, next)
	aw.wantRoutes.Store(len(aw.wanted) > 0)
	aw.mu.Unlock()
	if c := aw.logger.Check(zapcore.DebugLevel, "resuming polls for Processed through a request's route"); c != nil {
		c.Write(zap.String("host", host))
	}
	aw.hub.mgr.Resume()
}

func (aw *appWatches) putRoute(id string, r *pollRoute) {
	aw.mu.Lock()
	aw.routes[id] = r
	aw.mu.Unlock()
}

func (aw *appWatches) dropRoute(id string) {
	aw.mu.Lock()
	delete(aw.routes, id)
	aw.mu.Unlock()
}

// pollRoute is what a poll needs to travel like the traffic: the rest of
// the handler chain after the echo3d_webhooks handler (the compiled chain
// of a route is stable for the life of its config), and the parts of the
// request that the chain may depend on (its context values, Host, client
// address and TLS state).
type pollRoute struct {
	next       caddyhttp.Handler
	ctx        context.Context // the request's values, never cancelled
	server     *caddyhttp.Server
	vars       map[string]any
	host       string
	remoteAddr string
	tls        *tls.ConnectionState
	timeout    time.Duration
	maxBody    int
}

// newPollRoute captures r (its headers and body are not kept) and next.
func newPollRoute(h *Handler, r *http.Request, next caddyhttp.Handler) *pollRoute {
	ctx := context.WithoutCancel(r.Context())
	server, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	var vars map[string]any
	if v, ok := ctx.Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		vars = maps.Clone(v)
	}
	return &pollRoute{
		next:       next,
		ctx:        ctx,
		server:     server,
		vars:       vars,
		host:       r.Host,
		remoteAddr: r.RemoteAddr,
		tls:        r.TLS,
		timeout:    time.Duration(h.LookupTimeout),
		maxBody:    int(h.MaxResponseSize),
	}
}

// poll sends `POST /query` with key, entry and the credentials in an
// urlencoded body (never in the URL, which reverse_proxy's debug log
// prints) through the chain, and reads db[entry] from the answer.
func (pr *pollRoute) poll(ctx context.Context, w watch.Watch, c credentials) (bool, error) {
	// Values come from the captured request; cancellation from ctx and the
	// timeout.
	pctx, cancel := context.WithTimeout(pr.ctx, pr.timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()

	form := url.Values{}
	form.Set(paramKey, w.APIKey)
	form.Set(paramEntry, w.EntryID)
	c.addTo(form)
	body := form.Encode()
	req := &http.Request{
		Method:     http.MethodPost,
		URL:        &url.URL{Path: pollPath},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header: http.Header{
			"Content-Type": {"application/x-www-form-urlencoded"},
			"Accept":       {"application/json"},
			"User-Agent":   {pollUserAgent + version()},
		},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Host:          pr.host,
		RemoteAddr:    pr.remoteAddr,
		RequestURI:    pollPath,
		TLS:           pr.tls,
	}
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	rec := newLookupRecorder(pr.maxBody)
	req = pr.prepare(req.WithContext(pctx), rec)

	if err := pr.next.ServeHTTP(rec, req); err != nil {
		return false, fmt.Errorf("poll through the proxy: %w", err)
	}
	if rec.status < 200 || rec.status > 299 {
		return false, fmt.Errorf("upstream answered the poll with status %d", rec.status)
	}
	if rec.truncated {
		return false, fmt.Errorf("poll answer larger than %d bytes", pr.maxBody)
	}
	answer, err := decodePollAnswer(rec.header, rec.body.Bytes(), pr.maxBody)
	if err != nil {
		return false, err
	}
	entry, ok := events.QueryEntry(answer, w.EntryID)
	if !ok {
		return false, errors.New("the poll answer does not list the entry")
	}
	return events.EntryProcessed(entry), nil
}

// prepare gives req a fresh replacer and vars, as Caddy's server does for
// every request (so concurrent polls share no placeholder state and
// {http.request.*} describe the poll), keeping the captured vars.
func (pr *pollRoute) prepare(req *http.Request, w http.ResponseWriter) *http.Request {
	repl := caddy.NewReplacer()
	if pr.server == nil {
		ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl)
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, maps.Clone(pr.vars))
		return req.WithContext(ctx)
	}
	req = caddyhttp.PrepareRequest(req, repl, w, pr.server)
	if vars, ok := req.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		for k, v := range pr.vars {
			if _, set := vars[k]; !set {
				vars[k] = v
			}
		}
	}
	return req
}

// decodePollAnswer undoes a gzip Content-Encoding, bounded by max.
func decodePollAnswer(h http.Header, body []byte, max int) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))) {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("poll answer: %w", err)
		}
		defer zr.Close()
		out, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
		if err != nil {
			return nil, fmt.Errorf("poll answer: %w", err)
		}
		if len(out) > max {
			return nil, fmt.Errorf("poll answer larger than %d bytes", max)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("poll answer has Content-Encoding %q", h.Get("Content-Encoding"))
	}
}

// offerPollRoute lets a request that passes through the handler become the
// route of watches that have none (restored after a restart, or carried
// over a reload). It costs one atomic load while none waits.
func (h *Handler) offerPollRoute(r *http.Request, next caddyhttp.Handler) {
	if aw := h.app.watches; aw != nil && aw.wantRoutes.Load() {
		aw.offer(h, r, next)
	}
}

// skipObserve reports whether a call matched by a rule that only observes
// responses can bypass the handler: nothing is watched.
func (h *Handler) skipObserve(rule *events.Rule) bool {
	return rule.Observe && (h.app.watches == nil || h.app.watches.hub.mgr.Len() == 0)
}

// observing reports whether the response of a call matched by an observe
// rule must be captured: when its collection (known from the query string)
// has watches, or, for a key that can only be in the body, when anything
// is watched.
func (h *Handler) observing(rule *events.Rule, params *events.Params, hasBody bool) bool {
	if !rule.Observe || h.app.watches == nil {
		return false
	}
	mgr := h.app.watches.hub.mgr
	if key := params.Get(paramKey); key != "" {
		return mgr.Watching(key)
	}
	return hasBody && mgr.Len() > 0
}

// observeResponse is passive detection: a successful /query response that
// shows watched entries processed resolves them (Processed is in the
// outbox before the handler returns).
func (h *Handler) observeResponse(params *events.Params, status int, body []byte, complete bool) {
	if status < 200 || status > 299 || !complete || h.app.watches == nil {
		return
	}
	key := params.Get(paramKey)
	if key == "" {
		return
	}
	if n := h.app.watches.hub.mgr.Observe(key, body); n > 0 {
		h.debug("processed entries seen in a query response", zap.String("api_key", key), zap.Int("entries", n))
	}
}

// trackWatches acts on the events just derived: an Upload without a
// Processed for the same entry (a noProcessingWait upload, or a waited one
// answered before processing finished) starts a watch, when the Upload
// was written to the outbox (so Upload always precedes Processed); a Delete
// ends the watches of its entries.
func (h *Handler) trackWatches(r *http.Request, next caddyhttp.Handler, params *events.Params, payloads []events.Payload, enqueued bool) {
	aw := h.app.watches
	if aw == nil {
		return
	}
	for i, p := range payloads {
		switch p.Event {
		case events.Delete:
			if aw.hub.mgr.Len() > 0 {
				aw.hub.mgr.Forget(p.APIKey, p.EntryIDs)
			}
		case events.Upload:
			if enqueued && len(p.EntryIDs) == 1 && !processedFollows(payloads[i+1:], p) {
				aw.add(h, r, next, params, p.APIKey, p.EntryIDs[0])
			}
		}
	}
}

// processedFollows reports whether rest holds the Processed of upload's
// entry.
func processedFollows(rest []events.Payload, upload events.Payload) bool {
	for _, p := range rest {
		if p.Event == events.Processed && p.APIKey == upload.APIKey && slices.Equal(p.EntryIDs, upload.EntryIDs) {
			return true
		}
	}
	return false
}

// add starts watching apiKey's entryID, keeping the uploader's credentials
// in memory and its request as the route of the polls.
func (aw *appWatches) add(h *Handler, r *http.Request, next caddyhttp.Handler, params *events.Params, apiKey, entryID string) {
	id := newID(watchIDPrefix)
	aw.hub.putCreds(id, credentials{
		email:   params.Get(paramEmail),
		userKey: params.Get(paramUserKey),
		secKey:  params.Get(paramSecKey),
	})
	aw.putRoute(id, newPollRoute(h, r, next))
	_, added, err := aw.hub.mgr.Add(watch.Watch{ID: id, APIKey: apiKey, EntryID: entryID, Host: r.Host})
	if !added {
		aw.hub.dropCreds(id)
		aw.dropRoute(id)
		return
	}
	if err != nil {
		return // logged by the manager; the watch works until a restart
	}
	h.debug("watching an uploaded entry for Processed", zap.String("api_key", apiKey), zap.String("entry_id", entryID))
}

// parseProcessedPoll reads `processed_poll <first> [<max> [<give_up>]]`.
func (a *App) parseProcessedPoll(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 || len(args) > 3 {
		return d.ArgErr()
	}
	dst := []*caddy.Duration{&a.ProcessedPollFirst, &a.ProcessedPollMax, &a.ProcessedGiveUp}
	for i, s := range args {
		dur, err := caddy.ParseDuration(s)
		if err != nil {
			return d.Errf("processed_poll: bad duration %q: %v", s, err)
		}
		if dur <= 0 {
			return d.Errf("processed_poll: duration %q must be positive", s)
		}
		*dst[i] = caddy.Duration(dur)
	}
	if a.ProcessedPollMax != 0 && a.ProcessedPollMax < a.ProcessedPollFirst {
		return d.Errf("processed_poll: the cap %s is below the first interval %s", time.Duration(a.ProcessedPollMax), time.Duration(a.ProcessedPollFirst))
	}
	return nil
}

// parseCollection reads one `collection <key> { email; user_key; sec_key }`
// block.
func (a *App) parseCollection(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	key := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	if _, dup := a.Collections[key]; dup {
		return d.Errf("collection %q: configured twice", key)
	}
	var c Collection
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("collection %q: duplicate option %q", key, name)
		}
		seen[name] = true
		var dst *string
		switch name {
		case "email":
			dst = &c.Email
		case "user_key":
			dst = &c.UserKey
		case "sec_key":
			dst = &c.SecKey
		default:
			return d.Errf("collection %q: unrecognized option %q", key, name)
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		*dst = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	if c == (Collection{}) {
		return d.Errf("collection %q: needs at least one of email, user_key, sec_key", key)
	}
	if a.Collections == nil {
		a.Collections = map[string]Collection{}
	}
	a.Collections[key] = c
	return nil
}

// Interface guards
var (
	_ watch.Hooks      = (*watchHub)(nil)
	_ watch.Store      = lazyWatchStore{}
	_ caddy.Destructor = (*watchHub)(nil)
	_ fmt.Stringer     = credentials{}
	_ fmt.GoStringer   = credentials{}
)
