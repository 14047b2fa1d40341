package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// Outcomes reported in Result.Outcome.
const (
	OutcomeSucceeded = "succeeded" // 2xx
	OutcomeRetry     = "retry"     // failed; another attempt is scheduled
	OutcomeFailed    = "failed"    // failed; no more automatic attempts
	OutcomeDisabled  = "disabled"  // 410 Gone: the webhook was disabled; the delivery waits for it to be enabled
)

// Defaults of Config.
const (
	DefaultTimeout       = 15 * time.Second
	DefaultWorkers       = 64
	DefaultPerWebhook    = 4
	DefaultMaxRetryAfter = time.Hour
	DefaultUserAgent     = "caddy-echo3d-webhooks"
	leaseMargin          = 30 * time.Second
)

const (
	// pollInterval is the longest the loop sleeps without a wake-up.
	pollInterval = time.Second
	// claimCoalesce is the longest the loop waits after a claim before the
	// next.
	claimCoalesce = time.Millisecond
	// maxResponseBody is how much of a response body is kept.
	maxResponseBody = 4 << 10
	// maxDrain is how much more is read, and discarded, so that the
	// connection can be reused; a longer body closes the connection.
	maxDrain = 64 << 10
	// disableReason is recorded on a webhook whose receiver answered 410.
	disableReason = "410 Gone from receiver"
)

// Ordering says whether the attempts to one webhook wait for each other
// (Config.Ordering).
type Ordering string

// The values of Config.Ordering.
const (
	// OrderingStrict, the default, makes each attempt to a webhook wait
	// until the previous one to the same webhook has received the first
	// byte of its response, failed, or written its request at least 1s
	// ago. A receiver that answers promptly thus handles deliveries in the
	// order their events were derived (Upload before Processed), but gets
	// about one delivery per round trip; one slow to answer still gets up
	// to PerWebhook attempts in flight, each starting 1s after the previous
	// one wrote its request.
	OrderingStrict Ordering = "strict"
	// OrderingConcurrent lets up to PerWebhook attempts to one webhook be
	// in flight at once without waiting for each other: they are launched
	// in claim order but may reach the receiver, and be handled, in any
	// order. Throughput to one webhook is up to PerWebhook deliveries per
	// round trip; receivers must not rely on the order of deliveries, and
	// should act on the payload idempotently and de-duplicate by
	// webhook-id (delivery is at least once in either mode).
	OrderingConcurrent Ordering = "concurrent"
)

// orderGrace is how long after an attempt has written its request the next
// attempt to the same webhook may start without waiting for the response
// (OrderingStrict only).
// Bytes written first on one connection are not necessarily handled first
// when the next request goes out on another (idle) connection, so the next
// attempt normally waits for the response; a receiver that is slow to
// answer has long since read the request when the grace ends, and then
// deliveries to it proceed PerWebhook at a time. A variable for tests.
var orderGrace = time.Second

// Config configures a Dispatcher. Now and Rand, when set, must be safe for
// concurrent use (Rand is serialised by the Dispatcher anyway). Client's
// Transport carries the attempts (nil Transport: net/http's default); its
// CheckRedirect, Jar and Timeout are not used: a redirect is never
// followed, and Timeout bounds each attempt.
type Config struct {
	Outbox        Outbox
	Client        *http.Client     // nil = NewClient(ClientOptions{})
	Schedule      Schedule         // nil = DefaultSchedule; empty = no retries
	Timeout       time.Duration    // per attempt, 0 = 15s
	Lease         time.Duration    // 0 = Timeout + 30s
	Workers       int              // global max in-flight attempts, 0 = 64
	PerWebhook    int              // max in-flight attempts per webhook, 0 = 4
	MaxRetryAfter time.Duration    // cap on honoured Retry-After, 0 = 1h
	UserAgent     string           // "" = "caddy-echo3d-webhooks"
	Logger        *zap.Logger      // nil = nop
	Now           func() time.Time // nil = time.Now
	Rand          func() float64   // nil = math/rand/v2 Float64
	OnResult      func(Result)     // optional; called after every completed delivery attempt
	Breaker       BreakerConfig    // per-webhook circuit breaker; zero fields = defaults
	// DisableAfter disables a webhook none of whose attempts succeeded
	// for this long (a gap without attempts longer than it starts the
	// count afresh); 0 = 72h, negative = never.
	DisableAfter time.Duration
	// OnHealth, optional, is called when a webhook is paused, resumed or
	// disabled.
	OnHealth func(HealthChange)
	// Ordering trades order for throughput on each webhook: "" or
	// OrderingStrict (the default) delivers to a prompt receiver in order
	// at about one delivery per round trip; OrderingConcurrent keeps up to
	// PerWebhook attempts in flight, in no guaranteed order. Any other
	// value counts as OrderingStrict. In both modes an open breaker's
	// probes go one at a time and a webhook's hold (Retry-After) stops all
	// of its attempts.
	Ordering Ordering
}

// Result describes one finished attempt (or a delivery completed without an
// HTTP attempt, with Attempt 0). It is passed to Config.OnResult.
type Result struct {
	DeliveryID, EventID, WebhookID string
	Attempt                        int           // attempt number, from 1; 0 when no HTTP attempt was made
	Status                         int           // HTTP status; 0 when no response was received
	Err                            error         // why no response was received (or why no attempt was made); nil when a response was received
	Duration                       time.Duration // of the HTTP attempt
	Outcome                        string        // OutcomeSucceeded, OutcomeRetry, OutcomeFailed or OutcomeDisabled
	NextAttemptAt                  time.Time     // when Outcome is OutcomeRetry
}

// Dispatcher leases due deliveries from an Outbox and delivers them, at
// most Workers at a time and at most PerWebhook at a time to one webhook
// (one at a time, as probes, while the webhook's breaker is open; none while
// its hold lasts). Deliveries of disabled webhooks stay in the outbox.
// Attempts to one webhook are launched in the order they were claimed. With
// OrderingStrict (the default) an attempt starts only once the previous one
// to the same webhook has received its response headers, failed, or written
// its request at least orderGrace (1s) ago. A receiver that answers promptly
// thus handles deliveries in claim order (Upload before Processed), and a
// slow one still gets up to PerWebhook concurrent attempts. With
// OrderingConcurrent attempts do not wait for each other.
type Dispatcher struct {
	out           Outbox
	client        *http.Client
	schedule      Schedule
	timeout       time.Duration
	lease         time.Duration
	workers       int
	perWebhook    int
	maxRetryAfter time.Duration
	userAgent     string
	log           *zap.Logger
	now           func() time.Time
	rnd           func() float64
	onResult      func(Result)
	onHealth      func(HealthChange)
	breaker       BreakerConfig
	disableAfter  time.Duration
	grace         time.Duration // orderGrace when New ran
	poll          time.Duration // pollInterval, longer in tests
	concurrent    bool          // OrderingConcurrent: no gates
	targets       targetURLs    // webhook URLs, parsed once
	signer        signer        // keyed MACs, by secret

	// claimMu is held by the loop while it claims and launches, and by an
	// Offer while it hands off and launches, so that the attempts to a
	// webhook are launched in queue order. An Offer that finds it held
	// leaves its deliveries to the loop.
	claimMu sync.Mutex

	wakeCh   chan struct{}
	stopCh   chan struct{}
	loopDone chan struct{}
	handoff  chan attempt // to idle runners; unbuffered
	runnerCounts
	base   context.Context
	cancel context.CancelFunc

	startOnce sync.Once
	stopOnce  sync.Once
	// started is set once Start has run the loop.
	started  atomic.Bool
	attempts sync.WaitGroup

	mu       sync.Mutex
	inflight int                 // attempts launched and not finished
	lanes    map[string]*lane    // by webhook id, while it has attempts in flight
	active   map[string]struct{} // delivery ids in flight
	// recording counts attempts whose request is over and whose outcome
	// is being recorded; they no longer count in inflight.
	recording int
	// held is set when the loop leaves due deliveries unclaimed for want
	// of capacity (workers, per_webhook, a probe already out) or because
	// an attempt still holds the lease of one ahead of them; the next
	// attempt to free capacity or end clears it and wakes the loop. Other
	// attempts end without waking it unless they leave their delivery
	// pending.
	held bool
	// endings counts the attempts that freed capacity or ended, so that
	// the loop can tell whether one did while it claimed.
	endings uint64

	// hmu serializes the read-modify-write of webhooks' Health.
	hmu       sync.Mutex
	windows   map[string]*window // breaker samples by webhook id
	lastPrune time.Time          // of windows; loop goroutine only

	// lastClaimEnd is when the loop's last claim (and next-due lookup)
	// ended, lastClaimCost how long it took, capped at claimCoalesce (loop
	// goroutine only).
	lastClaimEnd  time.Time
	lastClaimCost time.Duration
	// errLogged is when loopError last wrote a line, errSuppressed how
	// many it has not written since (loop goroutine only).
	errLogged     time.Time
	errSuppressed int
}

// lane is the per-webhook state of the Dispatcher.
type lane struct {
	inflight int
	// gate is closed once the most recently launched attempt of this
	// webhook has written its request or ended; the next attempt waits
	// for it. Always nil with OrderingConcurrent.
	gate chan struct{}
}

// New returns a Dispatcher; call Start to run it. It panics when
// c.Outbox is nil.
func New(c Config) *Dispatcher {
	if c.Outbox == nil {
		panic("sink: Config.Outbox is nil")
	}
	d := &Dispatcher{
		out:           c.Outbox,
		client:        c.Client,
		schedule:      c.Schedule,
		timeout:       c.Timeout,
		lease:         c.Lease,
		workers:       c.Workers,
		perWebhook:    c.PerWebhook,
		maxRetryAfter: c.MaxRetryAfter,
		userAgent:     c.UserAgent,
		log:           c.Logger,
		now:           c.Now,
		onResult:      c.OnResult,
		onHealth:      c.OnHealth,
		breaker:       c.Breaker.withDefaults(),
		disableAfter:  c.DisableAfter,
		grace:         orderGrace,
		poll:          pollInterval,
		concurrent:    c.Ordering == OrderingConcurrent,
		wakeCh:        make(chan struct{}, 1),
		stopCh:        make(chan struct{}),
		handoff:       make(chan attempt),
		loopDone:      make(chan struct{}),
		lanes:         make(map[string]*lane),
		active:        make(map[string]struct{}),
		windows:       make(map[string]*window),
	}
	if d.disableAfter == 0 {
		d.disableAfter = DefaultDisableAfter
	}
	if d.client == nil {
		d.client = NewClient(ClientOptions{})
	}
	if d.schedule == nil {
		d.schedule = DefaultSchedule
	}
	if d.timeout <= 0 {
		d.timeout = DefaultTimeout
	}
	if d.lease <= 0 {
		d.lease = d.timeout + leaseMargin
	}
	if d.workers <= 0 {
		d.workers = DefaultWorkers
	}
	if d.perWebhook <= 0 {
		d.perWebhook = DefaultPerWebhook
	}
	if d.maxRetryAfter <= 0 {
		d.maxRetryAfter = DefaultMaxRetryAfter
	}
	if d.userAgent == "" {
		d.userAgent = DefaultUserAgent
	}
	if d.log == nil {
		d.log = zap.NewNop()
	}
	if d.now == nil {
		d.now = time.Now
	}
	if c.Rand == nil {
		d.rnd = rand.Float64
	} else {
		var mu sync.Mutex
		d.rnd = func() float64 {
			mu.Lock()
			defer mu.Unlock()
			return c.Rand()
		}
	}
	d.base, d.cancel = context.WithCancel(context.Background())
	return d
}

// Start runs the dispatcher's loop in the background and returns at once.
// Calls after the first, or after Stop, do nothing.
func (d *Dispatcher) Start() {
	d.startOnce.Do(func() {
		d.started.Store(true)
		go d.loop()
	})
}

// Notify wakes the loop to look for due deliveries now, typically after
// an enqueue. It never blocks and may be called at any time, before Start
// and after Stop included.
func (d *Dispatcher) Notify() {
	select {
	case d.wakeCh <- struct{}{}:
	default:
	}
}

// stopDrain bounds how long Stop waits, after cancelling them, for the
// attempts still running to put their deliveries back.
const stopDrain = time.Second

// Stop stops claiming deliveries and waits for the attempts in flight to
// finish, or for ctx to be done. Attempts still running then are cancelled
// without being recorded, and their deliveries put back in the outbox, due
// at once (the next dispatcher, after a reload, sends them; an attempt that
// cannot be put back keeps its lease and is delivered again once it
// expires). Once no attempt runs, it closes the client's idle connections.
// Stop is idempotent; it returns ctx.Err() when it gave up waiting.
func (d *Dispatcher) Stop(ctx context.Context) error {
	d.stopOnce.Do(func() { close(d.stopCh) })
	// Without a running loop, make a later Start a no-op and the loop count
	// as done.
	d.startOnce.Do(func() { close(d.loopDone) })
	done := make(chan struct{})
	go func() {
		<-d.loopDone
		// An Offer that saw the dispatcher running has launched its
		// attempts (counted in attempts) once it lets go of claimMu;
		// later ones launch nothing.
		d.claimMu.Lock()
		//lint:ignore SA2001 an empty critical section: waiting for it is the point
		d.claimMu.Unlock()
		d.attempts.Wait()
		// No attempt will use them: a dispatcher of a config reloaded
		// away should not keep connections to receivers open until they
		// expire.
		d.client.CloseIdleConnections()
		close(done)
	}()
	select {
	case <-done:
		d.cancel()
		return nil
	case <-ctx.Done():
		d.cancel()
		t := time.NewTimer(stopDrain)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		}
		return ctx.Err()
	}
}

func (d *Dispatcher) loop() {
	defer close(d.loopDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-d.stopCh:
			return
		default:
		}
		timer.Reset(d.iterate())
		select {
		case <-d.stopCh:
			return
		case <-d.wakeCh:
		case <-timer.C:
		}
	}
}

// iterate claims and launches what it can, and returns how long to sleep
// unless woken.
func (d *Dispatcher) iterate() (wait time.Duration) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("panic in webhook dispatcher loop", zap.Any("panic", r), zap.Stack("stack"))
			wait = d.poll
		}
	}()

	now := d.now()
	if now.Sub(d.lastPrune) > d.breaker.Window {
		d.pruneWindows(now)
		d.lastPrune = now
	}
	d.mu.Lock()
	// Attempts waiting for their outcome to be recorded hold no
	// connection, but beyond one per worker they stop new claims, so
	// that a slow store slows the claims down too.
	free := d.workers - d.inflight - max(0, d.recording-d.workers)
	if free <= 0 {
		d.held = true
	}
	endings := d.endings
	d.mu.Unlock()
	if free <= 0 {
		return d.poll // a finishing attempt wakes the loop
	}
	// After a claim, wait as long as it took (at most claimCoalesce)
	// before the next: what becomes due meanwhile (events enqueued,
	// workers freed) shares the next claim, which costs about as much for
	// one delivery as for sixteen, and the loop spends at most half its
	// time claiming. After a quiet spell, there is no wait.
	if since := time.Since(d.lastClaimEnd); since < d.lastClaimCost {
		return d.lastClaimCost - since
	}
	claimStart := time.Now()
	defer func() {
		d.lastClaimEnd = time.Now()
		d.lastClaimCost = min(d.lastClaimEnd.Sub(claimStart), claimCoalesce)
	}()

	claims, err := d.claimAndLaunch(now, free)
	if err != nil {
		d.loopError("claiming due webhook deliveries", err)
		return d.poll
	}
	d.mu.Lock()
	ended := d.endings != endings
	d.mu.Unlock()
	switch {
	case len(claims) >= free:
		// More may be due: the next round, after the coalescing wait,
		// sees whether attempts freed capacity meanwhile, or sets held.
		return 0
	case ended:
		// The claim's scan may have read the delivery of an attempt that
		// ended meanwhile as still queued, and passed over the webhook's
		// later ones: look again.
		return 0
	case len(claims) > 0:
		// An attempt that frees capacity the loop waits for, or whose
		// delivery stays pending, wakes the loop; NextDue, which costs a
		// look at the queues, is left for when nothing was claimed.
		return d.poll
	}

	next, ok, err := d.out.NextDue()
	switch {
	case err != nil:
		d.loopError("reading next webhook delivery due time", err)
		return d.poll
	case !ok:
		return d.poll
	case !next.After(now):
		// Due when we claimed but not claimed: its webhook (or every
		// worker) is busy. A finishing attempt wakes the loop, or has
		// ended since the claim began and it looks again.
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.endings != endings {
			return 0
		}
		d.held = true
		return d.poll
	}
	return min(max(next.Sub(d.now()), 0), d.poll)
}

// claimAndLaunch claims up to free due deliveries and launches them. It
// holds claimMu, so that it does not interleave with an Offer.
func (d *Dispatcher) claimAndLaunch(now time.Time, free int) ([]store.Claimed, error) {
	d.claimMu.Lock()
	defer d.claimMu.Unlock()
	claims, err := d.out.ClaimDue(now, d.lease, free, d.acceptor(now, true))
	if err != nil {
		return nil, err
	}
	for i := range claims {
		d.launch(claims[i])
	}
	return claims, nil
}

// acceptor returns the accept function of one claim at now (see
// Outbox.ClaimDue): it reserves capacity for each candidate it accepts,
// within Workers and PerWebhook (one probe while the webhook's breaker is
// open, none while its hold lasts); reservations are dropped once the
// claim returns, the launched attempts replacing them. A rejection is
// final for the rest of the claim: capacity freed meanwhile must not let a
// later delivery of a webhook overtake an earlier one that was turned
// down. With setHeld, a rejection for want of capacity sets held, so that
// the attempt that frees it wakes the loop.
func (d *Dispatcher) acceptor(now time.Time, setHeld bool) func(webhookID string) bool {
	reserved := make(map[string]int)
	reservedTotal := 0
	rejected := make(map[string]bool)
	full := false
	return func(webhookID string) bool {
		if full || rejected[webhookID] {
			return false
		}
		limit := d.perWebhook
		switch h := d.out.Health(webhookID); {
		case h.HoldUntil.After(now):
			rejected[webhookID] = true // paused, or asked to wait
			return false
		case h.Breaker == store.BreakerOpen:
			limit = 1 // one probe at a time
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		// As in the loop's count of free workers: attempts waiting for
		// their outcome to be recorded, beyond one per worker, take
		// capacity too, so that a slow store slows hand-offs down too.
		if d.inflight+max(0, d.recording-d.workers)+reservedTotal >= d.workers {
			full = true
			d.held = d.held || setHeld
			return false
		}
		n := reserved[webhookID]
		if l := d.lanes[webhookID]; l != nil {
			n += l.inflight
		}
		if n >= limit {
			rejected[webhookID] = true
			d.held = d.held || setHeld
			return false
		}
		reserved[webhookID]++
		reservedTotal++
		return true
	}
}

// loopErrorEvery is how often loopError writes a line while the loop's
// store calls keep failing.
const loopErrorEvery = time.Minute

// loopError logs a failed store call of the loop: the first at once, then
// at most one line per loopErrorEvery with how many went unlogged, so that
// an unusable store (the loop retries every second) cannot flood the log.
func (d *Dispatcher) loopError(msg string, err error) {
	now := time.Now()
	if !d.errLogged.IsZero() && now.Sub(d.errLogged) < loopErrorEvery {
		d.errSuppressed++
		return
	}
	d.log.Error(msg, zap.Error(err), zap.Int("unlogged_since_last", d.errSuppressed))
	d.errLogged, d.errSuppressed = now, 0
}

// launch starts the attempt of one claimed delivery on a runner (see
// start). It is a probe when the webhook's breaker is open.
func (d *Dispatcher) launch(c store.Claimed) {
	id, wh := c.Delivery.ID, c.Delivery.WebhookID
	probe := d.out.Health(wh).Breaker == store.BreakerOpen
	d.mu.Lock()
	if _, dup := d.active[id]; dup {
		// Leased again while still in flight (its lease expired while it
		// waited for its turn): the running attempt completes it.
		d.mu.Unlock()
		if ce := d.log.Check(zapcore.DebugLevel, "webhook delivery already in flight"); ce != nil {
			ce.Write(zap.String("delivery_id", id), zap.String("event_id", c.Delivery.EventID), zap.String("webhook_id", wh))
		}
		return
	}
	d.active[id] = struct{}{}
	d.inflight++
	l := d.lanes[wh]
	if l == nil {
		l = &lane{}
		d.lanes[wh] = l
	}
	l.inflight++
	var prev, gate chan struct{}
	if !d.concurrent {
		prev = l.gate
		gate = make(chan struct{})
		l.gate = gate
	}
	d.mu.Unlock()

	d.attempts.Add(1)
	d.start(attempt{c: c, probe: probe, prev: prev, gate: gate})
}

// run waits for the previous attempt to the same webhook to open its gate
// (see Dispatcher), then makes this one. prev and gate are nil with
// OrderingConcurrent: nothing to wait for, nothing to open.
func (d *Dispatcher) run(c store.Claimed, probe bool, prev <-chan struct{}, gate chan struct{}) {
	var release func()
	if gate != nil {
		var once sync.Once
		release = func() { once.Do(func() { close(gate) }) }
	}
	// requestDone frees the attempt's place among those in flight once its
	// request is over and its effect on the webhook's health is known, so
	// that the next attempt need not wait for the outcome to be recorded.
	// The delivery stays leased until it is.
	freed := false
	requestDone := func() {
		if freed {
			return
		}
		freed = true
		d.mu.Lock()
		d.recording++
		d.mu.Unlock()
		if d.finish(c.Delivery) {
			d.Notify()
		}
	}
	// pending is cleared once the attempt has recorded an outcome that
	// leaves nothing due: only then may it end without waking the loop.
	pending := true
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("panic in webhook delivery",
				zap.String("delivery_id", c.Delivery.ID),
				zap.String("event_id", c.Delivery.EventID),
				zap.String("webhook_id", c.Delivery.WebhookID),
				zap.Any("panic", r), zap.Stack("stack"))
		}
		if release != nil {
			release()
		}
		wake := pending
		if freed {
			d.mu.Lock()
			d.recording--
			if d.ended() {
				wake = true
			}
			d.mu.Unlock()
		} else if d.finish(c.Delivery) {
			wake = true
		}
		d.attempts.Done()
		if wake {
			d.Notify()
		}
	}()
	if prev != nil {
		select {
		case <-prev:
		case <-d.base.Done():
			d.putBack(c.Delivery, "dispatcher stopped")
			return
		}
	}
	pending = d.deliver(c, probe, release, requestDone)
}

// putBack returns a claimed delivery to the outbox, due at once and ahead
// of the webhook's later deliveries, without recording an attempt: the
// dispatcher stopped before its attempt ended, or its webhook was disabled
// after it was claimed. If that fails, the delivery keeps its lease and is
// due again when it expires.
func (d *Dispatcher) putBack(dl store.Delivery, why string) {
	now := d.now()
	err := d.out.Complete(dl.ID, nil, store.Outcome{State: store.StatePending, NextAttemptAt: firstInLine(dl, now)}, now)
	level := zapcore.DebugLevel
	if err != nil {
		level = zapcore.WarnLevel
	}
	if ce := d.log.Check(level, "webhook delivery put back in the outbox"); ce != nil {
		fields := []zap.Field{
			zap.String("delivery_id", dl.ID),
			zap.String("event_id", dl.EventID),
			zap.String("webhook_id", dl.WebhookID),
			zap.String("why", why),
		}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		ce.Write(fields...)
	}
}

// finish frees the place of an attempt in flight. It reports whether the
// loop waits for that capacity (see held) and must be woken.
func (d *Dispatcher) finish(dl store.Delivery) (wake bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	wake = d.ended()
	delete(d.active, dl.ID)
	d.inflight--
	if l := d.lanes[dl.WebhookID]; l != nil {
		l.inflight--
		if l.inflight <= 0 {
			delete(d.lanes, dl.WebhookID)
		}
	}
	return wake
}

// ended counts an attempt that frees capacity or ends, and reports
// whether the loop waits for it (see held), clearing held. The caller
// holds d.mu.
func (d *Dispatcher) ended() (wake bool) {
	d.endings++
	wake, d.held = d.held, false
	return wake
}

// firstInLine is the due time that puts a delivery back ahead of the ones
// created after it: its creation time (if past).
func firstInLine(dl store.Delivery, now time.Time) time.Time {
	if dl.CreatedAt.IsZero() || dl.CreatedAt.After(now) {
		return now
	}
	return dl.CreatedAt
}

// errStopped marks an attempt cut short by Stop.
var errStopped = errors.New("dispatcher stopped")

// deliver makes one attempt of a claimed delivery and completes it.
// release, unless nil (OrderingConcurrent), opens the gate of the next
// attempt to the webhook: it is called when the response arrives,
// orderGrace after the request was written, or when the attempt ends,
// whichever comes first. Every failure is retried on the schedule, except
// a 410 Gone, which disables the webhook. requestDone is called once the
// request is over and the webhook's health updated, before the outcome is
// recorded. It reports whether the delivery is left pending (to be
// attempted again, or put back).
func (d *Dispatcher) deliver(c store.Claimed, probe bool, release, requestDone func()) (pending bool) {
	dl := c.Delivery
	res := Result{DeliveryID: dl.ID, EventID: dl.EventID, WebhookID: dl.WebhookID}

	switch {
	case c.Webhook == nil:
		res.Err = errors.New("webhook deleted")
		res.Outcome = OutcomeFailed
		d.complete(dl.ID, nil, store.Outcome{State: store.StateFailed}, d.now(), res, zapcore.InfoLevel, "webhook delivery dropped")
		if d.onResult != nil {
			d.onResult(res)
		}
		return false
	case !c.Webhook.Enabled:
		// Disabled after the claim: kept for when it is enabled again.
		d.putBack(dl, "webhook disabled")
		return true
	}

	res.Attempt = dl.Attempts + 1
	at := d.now()
	started := time.Now()
	status, body, header, err := d.send(c, release)
	res.Duration = time.Since(started)
	if errors.Is(err, errStopped) {
		d.putBack(dl, "dispatcher stopped")
		return true
	}
	end := d.now()
	res.Status, res.Err = status, err

	att := &store.Attempt{
		DeliveryID:   dl.ID,
		EventID:      dl.EventID,
		WebhookID:    dl.WebhookID,
		Number:       res.Attempt,
		At:           at,
		Duration:     res.Duration,
		Status:       status,
		ResponseBody: body,
	}
	if err != nil {
		att.Error = err.Error()
	}

	var out store.Outcome
	obs := observation{webhookID: dl.WebhookID, eventID: dl.EventID, failed: true, probe: probe, err: att.Error}
	level, msg := zapcore.InfoLevel, "webhook delivery failed, will retry"
	switch {
	case err == nil && status >= 200 && status < 300:
		out.State = store.StateSucceeded
		res.Outcome = OutcomeSucceeded
		obs.failed = false
		level, msg = zapcore.DebugLevel, "webhook delivered"
	case err == nil && status == http.StatusGone:
		// Kept, first in line, for when the webhook is enabled again.
		out.State = store.StatePending
		out.NextAttemptAt = firstInLine(dl, end)
		res.Outcome = OutcomeDisabled
		level, msg = zapcore.WarnLevel, "webhook receiver answered 410 Gone; webhook disabled"
	default:
		if err == nil && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
			if ra, ok := RetryAfter(header, end); ok {
				// The whole webhook waits, so later deliveries do not
				// overtake this one nor add to the receiver's load.
				obs.holdUntil = end.Add(min(ra, d.maxRetryAfter))
			}
		}
		delay, ok := d.schedule.Delay(res.Attempt, d.rnd)
		if !ok {
			out.State = store.StateFailed
			res.Outcome = OutcomeFailed
			level, msg = zapcore.WarnLevel, "webhook delivery failed, no attempts left"
			break
		}
		out.State = store.StatePending
		out.NextAttemptAt = end.Add(delay)
		res.Outcome = OutcomeRetry
		res.NextAttemptAt = maxTime(out.NextAttemptAt, obs.holdUntil)
		if !obs.holdUntil.Before(out.NextAttemptAt) {
			// The webhook's hold is what it waits for: it keeps its place
			// ahead of the deliveries that came after it.
			out.NextAttemptAt = firstInLine(dl, end)
		}
	}
	// Made on failure only: formatting it for every attempt was 0.7 % of
	// a drain's CPU.
	if obs.failed && obs.err == "" {
		obs.err = "HTTP " + strconv.Itoa(status)
	}
	// Health first: a hold or an open breaker must be in place before the
	// delivery is due again.
	if res.Outcome == OutcomeDisabled {
		d.markDisabled(dl.WebhookID, dl.EventID, disableReason, end)
	} else {
		d.observe(obs, end)
	}
	requestDone()
	d.complete(dl.ID, att, out, end, res, level, msg)
	if d.onResult != nil {
		d.onResult(res)
	}
	return out.State == store.StatePending
}

// complete records the outcome and logs it.
func (d *Dispatcher) complete(id string, att *store.Attempt, out store.Outcome, now time.Time, res Result, level zapcore.Level, msg string) {
	if err := d.out.Complete(id, att, out, now); err != nil {
		d.log.Error("recording webhook delivery attempt",
			zap.String("delivery_id", res.DeliveryID),
			zap.String("event_id", res.EventID),
			zap.String("webhook_id", res.WebhookID),
			zap.Int("attempt", res.Attempt),
			zap.Error(err))
	}
	if ce := d.log.Check(level, msg); ce != nil {
		fields := []zap.Field{
			zap.String("delivery_id", res.DeliveryID),
			zap.String("event_id", res.EventID),
			zap.String("webhook_id", res.WebhookID),
			zap.Int("attempt", res.Attempt),
			zap.Int("status", res.Status),
			zap.Duration("duration", res.Duration),
			zap.String("outcome", res.Outcome),
		}
		if res.Err != nil {
			fields = append(fields, zap.String("error", res.Err.Error()))
		}
		if !res.NextAttemptAt.IsZero() {
			fields = append(fields, zap.Time("next_attempt_at", res.NextAttemptAt))
		}
		ce.Write(fields...)
	}
}

// send POSTs the event to the webhook, signed. It returns the response
// status, the start of its body and its header, or the error that kept a
// response from arriving (errStopped when Stop cut it short). release,
// unless nil, is called as deliver says.
func (d *Dispatcher) send(c store.Claimed, release func()) (int, string, http.Header, error) {
	if release != nil {
		defer release()
	}
	wh := c.Webhook
	u, err := d.targets.parse(wh.URL)
	if err != nil {
		return 0, "", nil, err
	}
	ts := d.now()
	stamp := strconv.FormatInt(ts.Unix(), 10)
	sig, err := d.signer.sign(wh, c.Delivery.ID, ts, stamp, c.Event.Payload)
	if err != nil {
		return 0, "", nil, fmt.Errorf("cannot sign: %w", err)
	}
	ctx := d.base
	if release != nil {
		var stopTimer func()
		ctx, stopTimer = d.traceGate(ctx, release)
		defer stopTimer()
	}
	// Lower-case names for the webhook's own fields, as the Standard
	// Webhooks specification writes them.
	fields := [...]headerField{
		{"Content-Type", "application/json"},
		{"User-Agent", d.userAgent},
		{"webhook-id", c.Delivery.ID},
		{"webhook-timestamp", stamp},
		{"webhook-signature", sig},
	}
	deadline := time.Now().Add(d.timeout)
	var resp *http.Response
	if h1, ok := d.transport().(*h1Transport); ok {
		// The parsed URL is shared, and only read; the fields go
		// straight to the wire, with no header map.
		req := &http.Request{Method: http.MethodPost, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			ContentLength: int64(len(c.Event.Payload))}
		resp, err = h1.roundTrip(ctx, req, c.Event.Payload, extras{fields: fields[:], deadline: deadline, statusOnly: true})
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(c.Event.Payload))
		for _, f := range fields {
			req.Header[f.name] = []string{f.value}
		}
		// The transport, not Client.Do: no redirect is followed anyway,
		// and Client.Do's redirect and cookie machinery (copying the
		// headers on every request) cost about 2 % of a drain's CPU.
		resp, err = d.transport().RoundTrip(req)
	}
	if err != nil {
		switch {
		case d.base.Err() != nil:
			return 0, "", nil, errStopped
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
			return 0, "", nil, fmt.Errorf("timeout after %s", d.timeout)
		}
		// Drop a "Post <url>:" wrapper, if any: the URL may hold a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength == 0 { // as a 204's: nothing to read
		return resp.StatusCode, "", resp.Header, nil
	}
	buf, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	return resp.StatusCode, strings.ToValidUTF8(string(buf), "\uFFFD"), resp.Header, nil
}

// transport returns the RoundTripper attempts go through (see
// Config.Client).
func (d *Dispatcher) transport() http.RoundTripper {
	if d.client.Transport != nil {
		return d.client.Transport
	}
	return http.DefaultTransport
}

// traceGate returns ctx with a client trace that calls release when the
// response's first byte arrives, when writing the request fails, or
// orderGrace after the request was written; stop cancels the pending grace
// timer.
func (d *Dispatcher) traceGate(ctx context.Context, release func()) (_ context.Context, stop func()) {
	var mu sync.Mutex
	var grace *time.Timer
	stop = func() {
		mu.Lock()
		if grace != nil {
			grace.Stop()
		}
		mu.Unlock()
	}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err != nil {
				release()
				return
			}
			mu.Lock()
			if grace == nil {
				grace = time.AfterFunc(d.grace, release)
			}
			mu.Unlock()
		},
		GotFirstResponseByte: release,
	})
	return ctx, stop
}
