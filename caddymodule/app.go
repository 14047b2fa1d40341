// Package caddymodule is the Caddy side of caddy-echo3d-webhooks: the
// echo3d_webhooks app (store and delivery workers), the HTTP handler that
// derives events from proxied echo3D traffic, the admin API and the
// Caddyfile syntax. It is the only package that imports Caddy.
package caddymodule

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/sink"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

func init() {
	caddy.RegisterModule(App{})
}

// appID is the module ID of the app and the name of its global option.
const appID = "echo3d_webhooks"

// Defaults of the app's options.
const (
	defaultSecretOverlap = 24 * time.Hour
	// defaultMaxWebhooksPerCollection bounds the webhooks of one apiKey.
	defaultMaxWebhooksPerCollection = 100
	// stopGrace bounds how long Stop waits for in-flight attempts; the
	// ones still running are cancelled and put back in the outbox.
	stopGrace = 5 * time.Second
)

// App owns the webhook store (Badger) and the delivery workers. Handlers
// enqueue the events they derive through it; the admin API manages webhooks
// through it. Without a global `echo3d_webhooks` block the app runs with
// defaults as soon as an `echo3d_webhooks` handler is used.
type App struct {
	// Storage is the Badger directory that keeps webhooks, the outbox and
	// delivery records, or "memory" for a store that lives only as long as
	// the process (tests, demos). Placeholders such as {env.X} are expanded.
	// Default: <caddy data dir>/echo3d_webhooks.
	Storage string `json:"storage,omitempty"`

	// Retry lists the delays before attempts 2, 3, ...; each is jittered by
	// ±20 %. After the last one the delivery is recorded as failed and can be
	// redelivered through the admin API. Default: 5s 5m 30m 2h 5h 10h 10h.
	Retry []caddy.Duration `json:"retry,omitempty"`

	// Timeout bounds one delivery attempt, from dialing to the end of the
	// response headers and the first 4 KiB of the body. Default: 15s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// AllowPrivateTargets accepts webhook URLs whose hosts are or resolve to
	// loopback, private, link-local, CGNAT, multicast or unspecified
	// addresses. Meant for tests and local demos only.
	AllowPrivateTargets bool `json:"allow_private_targets,omitempty"`

	// AllowTargets lets webhooks reach chosen internal receivers without
	// lifting the whole policy as AllowPrivateTargets does. Each entry is an
	// IP address or CIDR prefix (every address in it is allowed), or a host
	// name, exact or "*.example.internal" for its subdomains (that name may
	// resolve to any address but a cloud metadata service's). Cloud metadata
	// addresses are allowed only by an entry naming that single address.
	// Checked when a webhook is created or changed and on every connection.
	AllowTargets []string `json:"allow_targets,omitempty"`

	// MaxWebhooksPerCollection bounds the webhooks registered for one
	// collection (apiKey). Default: 100.
	MaxWebhooksPerCollection int `json:"max_webhooks_per_collection,omitempty"`

	// MinFreeSpace is the free space, in bytes, below which the store's
	// disk is considered full: events are then dropped (logged at error
	// level and counted) and the admin API answers 503, while requests are
	// still proxied. Badger crashes the process when it writes to a disk
	// with no space left, so the margin must stay above zero. Ignored for
	// storage memory. Default: 256 MiB.
	MinFreeSpace int64 `json:"min_free_space,omitempty"`

	// TrustedCAFiles lists PEM files of certificate authorities trusted for
	// webhook receivers, in addition to the system roots (receivers behind
	// a private CA).
	TrustedCAFiles []string `json:"trusted_ca_files,omitempty"`

	// SecretOverlap is how long a rotated-out secret keeps signing next to
	// the new one. Default: 24h.
	SecretOverlap caddy.Duration `json:"secret_overlap,omitempty"`

	// Workers bounds the delivery attempts in flight at once. Default: 64.
	Workers int `json:"workers,omitempty"`

	// PerWebhook bounds the attempts in flight to one webhook, so a slow
	// receiver holds at most this many workers. Default: 4.
	PerWebhook int `json:"per_webhook,omitempty"`

	// Ordering chooses, for every webhook, between delivery order and
	// throughput. "strict" (the default) makes each attempt to a webhook
	// wait until the previous one got the start of its response, failed,
	// or wrote its request 1s ago: a receiver that answers promptly handles
	// deliveries in the order their events were derived (Upload before
	// Processed), at about one delivery per round trip. "concurrent" lets
	// up to per_webhook attempts to one webhook run at once, in no
	// guaranteed order: receivers must handle each payload on its own,
	// idempotently, de-duplicating by webhook-id. Either way an open
	// breaker probes one attempt at a time and a Retry-After hold stops
	// the whole webhook.
	Ordering string `json:"ordering,omitempty"`

	// Versions lists the HTTP versions the delivery client may use with
	// receivers: "1.1" and/or "2", as in reverse_proxy's http transport;
	// default ["1.1"]. "1.1" must be listed, so that every HTTPS receiver
	// stays reachable. With ["1.1"] the plugin's own HTTP/1.1 transport
	// sends each attempt as one write on one of up to Workers kept-alive
	// connections per receiver; ["1.1", "2"] uses Go's net/http client,
	// which speaks HTTP/2 to receivers that offer it and carries every
	// attempt to a receiver over one connection. Measured on 2 cores over
	// ten runs, the HTTP/1.1 transport drained a backlog 9-45 % faster,
	// with 9-32 % less CPU per delivery on both ends.
	Versions []string `json:"versions,omitempty"`

	// Breaker configures the per-webhook circuit breaker, which pauses a
	// webhook whose recent attempts mostly failed and probes it instead.
	// Default: on, pausing at 50 % failed of at least 10 attempts in 5m,
	// for 30s doubling to 10m.
	Breaker *BreakerOptions `json:"breaker,omitempty"`

	// DisableAfter disables a webhook none of whose attempts succeeded for
	// this long (a gap without attempts longer than it starts the count
	// afresh). Its deliveries are kept and are sent once it is enabled
	// again; a warning is logged, a metric counted and the Caddy event
	// echo3d_webhook_disabled emitted. Negative: never. Default: 72h.
	DisableAfter caddy.Duration `json:"disable_after,omitempty"`

	// ProcessedPollFirst is the delay between an upload answered before
	// echo3D finished processing it (noProcessingWait=true, or a waited
	// upload whose response shows no derived files) and the first
	// `/query` poll for its entry; the delay then doubles at every poll
	// (±20 % jitter). Default: 10s.
	ProcessedPollFirst caddy.Duration `json:"processed_poll_first,omitempty"`

	// ProcessedPollMax caps the delay between two polls. Default: 1m.
	ProcessedPollMax caddy.Duration `json:"processed_poll_max,omitempty"`

	// ProcessedGiveUp is how long after the upload a watch gives up
	// without emitting Processed (logged at warn level). Default: 1h.
	ProcessedGiveUp caddy.Duration `json:"processed_give_up,omitempty"`

	// MaxWatches bounds the uploads watched for Processed at once; beyond
	// it the oldest gives up (logged at warn level and counted).
	// Default: 1000.
	MaxWatches int `json:"max_watches,omitempty"`

	// Collections maps collection keys to echo3D credentials used to poll
	// for Processed when the uploader's own credentials are not in memory
	// (uploads made before a restart). Values may be {env.*} placeholders.
	Collections map[string]Collection `json:"collections,omitempty"`

	watches    *appWatches
	events     eventsApp
	ctx        caddy.Context
	logger     *zap.Logger
	poolKey    string
	handle     *storeHandle
	policy     sink.Policy
	dispatcher *sink.Dispatcher
	started    bool
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  appID,
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets defaults, takes a reference to the shared store (without
// opening it) and builds the dispatcher (without starting it).
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()

	repl := caddy.NewReplacer()
	storage := repl.ReplaceAll(a.Storage, "")
	inMemory := storage == memoryKey
	key := memoryKey
	dir := ""
	if !inMemory {
		if storage == "" {
			storage = filepath.Join(caddy.AppDataDir(), appID)
		}
		abs, err := caddy.FastAbs(storage)
		if err != nil {
			return fmt.Errorf("resolving storage path %q: %w", storage, err)
		}
		dir = abs
		key = "dir:" + abs
	}
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		return &storeHandle{dir: dir, inMemory: inMemory, logger: a.logger.Named("store")}, nil
	})
	if err != nil {
		return fmt.Errorf("loading store %s: %w", key, err)
	}
	a.poolKey = key
	a.handle = val.(*storeHandle)

	if a.Timeout <= 0 {
		a.Timeout = caddy.Duration(sink.DefaultTimeout)
	}
	if a.SecretOverlap == 0 {
		a.SecretOverlap = caddy.Duration(defaultSecretOverlap)
	}
	allowPrefixes, allowHosts, err := sink.ParseAllowTargets(a.AllowTargets)
	if err != nil {
		return fmt.Errorf("allow_targets: %w", err)
	}
	a.policy = sink.Policy{AllowPrivate: a.AllowPrivateTargets, AllowPrefixes: allowPrefixes, AllowHosts: allowHosts}
	if a.MaxWebhooksPerCollection == 0 {
		a.MaxWebhooksPerCollection = defaultMaxWebhooksPerCollection
	}
	if a.MinFreeSpace == 0 {
		a.MinFreeSpace = defaultMinFreeSpace
	}
	a.handle.minFree.Store(a.MinFreeSpace)
	var roots *x509.CertPool
	if len(a.TrustedCAFiles) > 0 {
		roots, err = x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		for _, f := range a.TrustedCAFiles {
			f = repl.ReplaceAll(f, "")
			pem, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("trusted_ca_files: %w", err)
			}
			if !roots.AppendCertsFromPEM(pem) {
				return fmt.Errorf("trusted_ca_files: no PEM certificate found in %s", f)
			}
		}
	}
	if err := a.provisionObservability(ctx); err != nil {
		return err
	}
	schedule := sink.Schedule(sink.DefaultSchedule)
	if len(a.Retry) > 0 {
		schedule = make(sink.Schedule, len(a.Retry))
		for i, d := range a.Retry {
			schedule[i] = time.Duration(d)
		}
	}
	// As many idle connections per host as attempts can be in flight, so
	// that a busy HTTP/1.1 receiver does not cost a TLS handshake per
	// delivery.
	idle := a.Workers
	if idle <= 0 {
		idle = sink.DefaultWorkers
	}
	client := sink.NewClient(sink.ClientOptions{
		Policy:              a.policy,
		RootCAs:             roots,
		MaxIdleConnsPerHost: idle,
		HTTP1Only:           !slices.Contains(a.Versions, "2"),
	})
	a.dispatcher = sink.New(sink.Config{
		Outbox:     lazyOutbox{a.handle},
		Client:     client,
		Schedule:   schedule,
		Timeout:    time.Duration(a.Timeout),
		Workers:    a.Workers,
		PerWebhook: a.PerWebhook,
		Ordering:   sink.Ordering(a.Ordering),
		UserAgent:  "caddy-echo3d-webhooks/" + version(),
		Logger:     a.logger.Named("delivery"),
		Breaker:    a.Breaker.sinkConfig(),
		// Negative: never; zero: the default.
		DisableAfter: time.Duration(a.DisableAfter),
		OnResult:     a.observeResult,
		OnHealth:     a.observeHealth,
	})
	return a.provisionWatches()
}

// Validate checks the options.
func (a *App) Validate() error {
	for i, d := range a.Retry {
		if d <= 0 {
			return fmt.Errorf("retry: delay %d must be positive, got %s", i+1, time.Duration(d))
		}
	}
	if a.SecretOverlap < 0 {
		return fmt.Errorf("secret_overlap: must not be negative, got %s", time.Duration(a.SecretOverlap))
	}
	if a.Workers < 0 {
		return fmt.Errorf("workers: must not be negative, got %d", a.Workers)
	}
	if a.PerWebhook < 0 {
		return fmt.Errorf("per_webhook: must not be negative, got %d", a.PerWebhook)
	}
	switch sink.Ordering(a.Ordering) {
	case "", sink.OrderingStrict, sink.OrderingConcurrent:
	default:
		return fmt.Errorf("ordering: must be %q or %q, got %q", sink.OrderingStrict, sink.OrderingConcurrent, a.Ordering)
	}
	if err := checkVersions(a.Versions); err != nil {
		return fmt.Errorf("versions: %w", err)
	}
	if a.MaxWebhooksPerCollection < 0 {
		return fmt.Errorf("max_webhooks_per_collection: must not be negative, got %d", a.MaxWebhooksPerCollection)
	}
	if a.MinFreeSpace < 0 {
		return fmt.Errorf("min_free_space: must not be negative, got %d", a.MinFreeSpace)
	}
	if err := a.validateDelivery(); err != nil {
		return err
	}
	return a.validateWatches()
}

// checkVersions returns an error unless vs is an acceptable versions
// list: empty (the default), or "1.1" optionally with "2". HTTP/2 alone is
// refused, as receivers that speak only HTTP/1.1 would become unreachable.
func checkVersions(vs []string) error {
	for _, v := range vs {
		if v != "1.1" && v != "2" {
			return fmt.Errorf(`must be "1.1" or "2", got %q`, v)
		}
	}
	if len(vs) > 0 && !slices.Contains(vs, "1.1") {
		return fmt.Errorf(`must include "1.1" (HTTP/2 alone is not supported), got %q`, vs)
	}
	return nil
}

// Start opens the store (if no request has opened it already) and starts
// the delivery workers. An unusable store aborts the config load with an
// error that names the directory.
func (a *App) Start() error {
	if _, err := a.handle.open(); err != nil {
		return fmt.Errorf("opening webhook store: %w", err)
	}
	a.dispatcher.Start()
	metricsStore.Store(a.handle)
	a.started = true
	a.startWatches()
	return nil
}

// Stop stops claiming deliveries and waits briefly for attempts in flight;
// unfinished ones stay in the outbox and are retried after their lease.
func (a *App) Stop() error {
	if !a.started {
		return nil
	}
	a.stopWatches()
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	if err := a.dispatcher.Stop(ctx); err != nil {
		a.logger.Warn("stopping delivery workers", zap.Error(err))
	}
	return nil
}

// Cleanup releases this config's reference to the shared store (and to
// its watch hub, first: the hub's last polls may still write to the store).
func (a *App) Cleanup() error {
	a.cleanupWatches()
	if a.poolKey == "" {
		return nil
	}
	key := a.poolKey
	a.poolKey = ""
	_, err := stores.Delete(key)
	return err
}

// store returns the open store, opening it if needed, or an error saying
// why it cannot be used (see storeHandle.usable).
func (a *App) store() (*store.Store, error) {
	return a.handle.usable()
}

// enqueue makes the derived events durable in the outbox and wakes the
// workers. It returns how many deliveries were created.
func (a *App) enqueue(payloads []events.Payload) (int, error) {
	st, err := a.store()
	if err != nil {
		return 0, err
	}
	now := time.Now()
	evs := make([]store.Event, 0, len(payloads))
	for _, p := range payloads {
		// Events no webhook would receive are counted, not encoded.
		if !st.Subscribed(p.APIKey, string(p.Event)) {
			continue
		}
		evs = append(evs, store.Event{
			ID:        store.NewEventID(),
			Trigger:   string(p.Event),
			APIKey:    p.APIKey,
			Payload:   p.AppendJSON(nil),
			CreatedAt: now,
		})
	}
	if len(evs) == 0 {
		countDerived(payloads)
		return 0, nil
	}
	fresh, err := st.EnqueueFresh(evs, now)
	if err != nil {
		// Some may have been written before the failure: claim them now
		// rather than at the next poll.
		a.dispatcher.Notify()
		return 0, err
	}
	countDerived(payloads)
	// Started at once when nothing is queued ahead of them; otherwise the
	// dispatcher's loop claims them.
	a.dispatcher.Offer(fresh)
	return len(fresh), nil
}

// lazyOutbox lets the dispatcher reach the store through the shared handle,
// so it never holds a closed database.
type lazyOutbox struct{ h *storeHandle }

var errStoreNotOpen = errors.New("webhook store not open")

func (o lazyOutbox) st() (*store.Store, error) {
	return o.h.usableIfOpen()
}

func (o lazyOutbox) ClaimDue(now time.Time, lease time.Duration, limit int, accept func(string) bool) ([]store.Claimed, error) {
	st, err := o.st()
	if err != nil {
		return nil, err
	}
	return st.ClaimDue(now, lease, limit, accept)
}

func (o lazyOutbox) Handoff(fresh []store.Fresh, now time.Time, lease time.Duration, accept func(string) bool) []store.Claimed {
	st, err := o.st()
	if err != nil {
		o.Release(fresh)
		return nil
	}
	return st.Handoff(fresh, now, lease, accept)
}

func (o lazyOutbox) Release(fresh []store.Fresh) {
	if st := o.h.opened(); st != nil {
		st.Release(fresh)
	}
}

func (o lazyOutbox) Complete(id string, at *store.Attempt, out store.Outcome, now time.Time) error {
	st, err := o.st()
	if err != nil {
		return err
	}
	return st.Complete(id, at, out, now)
}

func (o lazyOutbox) NextDue() (time.Time, bool, error) {
	st, err := o.st()
	if err != nil {
		return time.Time{}, false, err
	}
	return st.NextDue()
}

func (o lazyOutbox) DisableWebhook(id, reason string) error {
	st, err := o.st()
	if err != nil {
		return err
	}
	return st.DisableWebhook(id, reason)
}

// newID returns prefix followed by 32 random hex digits.
func newID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ sink.Outbox        = lazyOutbox{}
	_ sink.Handoffer     = lazyOutbox{}
)
