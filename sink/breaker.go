package sink

import (
	"fmt"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// Defaults of BreakerConfig and Config.DisableAfter.
const (
	DefaultFailureRatio = 0.5
	DefaultMinAttempts  = 10
	DefaultWindow       = 5 * time.Minute
	DefaultPause        = 30 * time.Second
	DefaultMaxPause     = 10 * time.Minute
	DefaultDisableAfter = 72 * time.Hour
)

const (
	// maxSamples bounds the attempts remembered per webhook for its
	// breaker.
	maxSamples = 256
	// failureResolution is how stale Health.LastFailureAt may get, so
	// that a failing webhook's health is not rewritten on every attempt.
	failureResolution = time.Minute
)

// Changes reported in HealthChange.Change.
const (
	ChangePaused   = "paused"   // the breaker opened: deliveries wait, one probe at a time
	ChangeResumed  = "resumed"  // a probe (or a straggler) succeeded: the breaker closed
	ChangeDisabled = "disabled" // the webhook was disabled (410 Gone, or failing too long)
)

// Causes of ChangeDisabled, in HealthChange.Cause.
const (
	CauseGone    = "gone"    // the receiver answered 410 Gone
	CauseFailing = "failing" // no attempt succeeded for Config.DisableAfter
)

// BreakerConfig configures the per-webhook circuit breaker. When the share
// of failed attempts among a webhook's attempts of the last Window reaches
// FailureRatio (with at least MinAttempts of them), the breaker opens: the
// webhook's deliveries stay in the outbox, unclaimed, for Pause; then one
// delivery at a time probes the receiver. A failed probe doubles the pause
// (up to MaxPause); a success closes the breaker and the backlog flows.
// Deliveries waiting meanwhile use none of their retries.
type BreakerConfig struct {
	Off          bool          // no breaker
	FailureRatio float64       // 0 = 0.5
	MinAttempts  int           // 0 = 10
	Window       time.Duration // 0 = 5m
	Pause        time.Duration // 0 = 30s
	MaxPause     time.Duration // 0 = 10m
}

// withDefaults returns c with its zero fields set to the defaults.
func (c BreakerConfig) withDefaults() BreakerConfig {
	if c.FailureRatio <= 0 {
		c.FailureRatio = DefaultFailureRatio
	}
	if c.MinAttempts <= 0 {
		c.MinAttempts = DefaultMinAttempts
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Pause <= 0 {
		c.Pause = DefaultPause
	}
	if c.MaxPause <= 0 {
		c.MaxPause = DefaultMaxPause
	}
	c.MaxPause = max(c.MaxPause, c.Pause)
	return c
}

// HealthChange reports a change of a webhook's delivery state to
// Config.OnHealth.
type HealthChange struct {
	WebhookID string
	// Change is ChangePaused, ChangeResumed or ChangeDisabled.
	Change string
	// Cause is CauseGone or CauseFailing for ChangeDisabled.
	Cause string
	// Reason says why, for people.
	Reason string
	// Until is when a paused webhook is probed next.
	Until time.Time
	// FailingSince is the first failed attempt since the last success.
	FailingSince time.Time
	// FailureRatio and Attempts describe the window that opened the
	// breaker.
	FailureRatio float64
	Attempts     int
}

// sample is one attempt remembered for the breaker.
type sample struct {
	at     time.Time
	failed bool
}

// window holds a webhook's recent attempts, oldest first.
type window struct{ samples []sample }

func (w *window) add(s sample, keep time.Duration) {
	w.prune(s.at, keep)
	if len(w.samples) == maxSamples {
		w.samples = append(w.samples[:0], w.samples[1:]...)
	}
	w.samples = append(w.samples, s)
}

// prune drops the attempts older than keep.
func (w *window) prune(now time.Time, keep time.Duration) {
	i := 0
	for i < len(w.samples) && now.Sub(w.samples[i].at) > keep {
		i++
	}
	if i > 0 {
		w.samples = append(w.samples[:0], w.samples[i:]...)
	}
}

// ratio returns the share of failed attempts and how many there are.
func (w *window) ratio() (float64, int) {
	if len(w.samples) == 0 {
		return 0, 0
	}
	failed := 0
	for _, s := range w.samples {
		if s.failed {
			failed++
		}
	}
	return float64(failed) / float64(len(w.samples)), len(w.samples)
}

// observation is what observe needs to know about a finished attempt.
type observation struct {
	webhookID string
	eventID   string // for logs
	failed    bool
	probe     bool      // the attempt was an open breaker's probe
	holdUntil time.Time // Retry-After asked to wait until then
	err       string    // what went wrong, for the disable reason
}

// observe updates a webhook's health after an attempt: the failure streak,
// a Retry-After hold, the breaker and, after DisableAfter of failure,
// disabling the webhook. It writes the stored Health only when something
// changed, so a healthy webhook costs nothing.
func (d *Dispatcher) observe(o observation, now time.Time) {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	h := d.out.Health(o.webhookID)
	was := h
	var changes []HealthChange
	w := d.windows[o.webhookID]
	if w == nil {
		w = &window{}
		d.windows[o.webhookID] = w
	}

	if !o.failed {
		if h.Breaker == store.BreakerOpen {
			changes = append(changes, HealthChange{WebhookID: o.webhookID, Change: ChangeResumed, FailingSince: h.FailingSince})
			w.samples = w.samples[:0]
		} else {
			w.add(sample{at: now}, d.breaker.Window)
		}
		next := store.Health{DisabledAt: h.DisabledAt}
		if h.HoldUntil.After(now) {
			next.HoldUntil = h.HoldUntil // another delivery's Retry-After
		}
		h = next
	} else {
		if h.FailingSince.IsZero() || (d.disableAfter > 0 && now.Sub(h.LastFailureAt) > d.disableAfter) {
			// A new streak; a gap longer than DisableAfter forgives the
			// old one.
			h.FailingSince = now
		}
		if now.Sub(h.LastFailureAt) >= d.failureResolution() {
			h.LastFailureAt = now
		}
		if o.holdUntil.After(h.HoldUntil) {
			h.HoldUntil = o.holdUntil
		}
		w.add(sample{at: now, failed: true}, d.breaker.Window)
		switch {
		case d.breaker.Off || !h.DisabledAt.IsZero():
		case h.Breaker == store.BreakerOpen && o.probe:
			h.Pause = min(max(2*h.Pause, d.breaker.Pause), d.breaker.MaxPause)
			h.HoldUntil = maxTime(h.HoldUntil, now.Add(h.Pause))
			if ce := d.log.Check(zapcore.DebugLevel, "webhook probe failed; still paused"); ce != nil {
				ce.Write(zap.String("webhook_id", o.webhookID), zap.String("event_id", o.eventID), zap.Time("until", h.HoldUntil))
			}
		case h.Breaker != store.BreakerOpen:
			ratio, n := w.ratio()
			if n >= d.breaker.MinAttempts && ratio >= d.breaker.FailureRatio {
				h.Breaker = store.BreakerOpen
				h.Pause = d.breaker.Pause
				h.HoldUntil = maxTime(h.HoldUntil, now.Add(h.Pause))
				changes = append(changes, HealthChange{
					WebhookID: o.webhookID, Change: ChangePaused, Until: h.HoldUntil,
					FailingSince: h.FailingSince, FailureRatio: ratio, Attempts: n,
					Reason: fmt.Sprintf("%d of the last %d attempts failed", int(ratio*float64(n)+0.5), n),
				})
			}
		}
		if d.disableAfter > 0 && h.DisabledAt.IsZero() && now.Sub(h.FailingSince) >= d.disableAfter {
			reason := fmt.Sprintf("no successful attempt since %s (disable_after %s)",
				h.FailingSince.UTC().Format(time.RFC3339), d.disableAfter)
			if o.err != "" {
				reason += "; last error: " + o.err
			}
			if err := d.out.DisableWebhook(o.webhookID, reason); err != nil {
				d.log.Error("disabling failing webhook", zap.String("webhook_id", o.webhookID),
					zap.String("event_id", o.eventID), zap.Error(err))
			} else {
				h.DisabledAt = now
				changes = append(changes, HealthChange{
					WebhookID: o.webhookID, Change: ChangeDisabled, Cause: CauseFailing,
					Reason: reason, FailingSince: h.FailingSince,
				})
			}
		}
	}

	if h != was {
		if err := d.out.SetHealth(o.webhookID, h); err != nil {
			d.log.Error("recording webhook health", zap.String("webhook_id", o.webhookID),
				zap.String("event_id", o.eventID), zap.Error(err))
		}
	}
	for _, c := range changes {
		d.report(c, o.eventID)
	}
}

// failureResolution is how stale Health.LastFailureAt may get: a minute,
// or less when DisableAfter is short.
func (d *Dispatcher) failureResolution() time.Duration {
	if d.disableAfter > 0 {
		return min(failureResolution, d.disableAfter/10)
	}
	return failureResolution
}

// markDisabled records, under the health lock, that the webhook was just
// disabled because its receiver answered 410, and reports it unless it
// already was (another attempt in flight got the 410 first).
func (d *Dispatcher) markDisabled(webhookID, eventID, reason string, now time.Time) {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	h := d.out.Health(webhookID)
	if !h.DisabledAt.IsZero() {
		return
	}
	if err := d.out.DisableWebhook(webhookID, reason); err != nil {
		d.log.Error("disabling webhook after 410 Gone", zap.String("webhook_id", webhookID),
			zap.String("event_id", eventID), zap.Error(err))
		return
	}
	h.DisabledAt = now
	if err := d.out.SetHealth(webhookID, h); err != nil {
		d.log.Error("recording webhook health", zap.String("webhook_id", webhookID),
			zap.String("event_id", eventID), zap.Error(err))
	}
	d.report(HealthChange{WebhookID: webhookID, Change: ChangeDisabled, Cause: CauseGone, Reason: reason, FailingSince: h.FailingSince}, eventID)
}

// report logs a health change and passes it to OnHealth.
func (d *Dispatcher) report(c HealthChange, eventID string) {
	level, msg := zapcore.InfoLevel, "webhook resumed: a delivery succeeded"
	fields := []zap.Field{zap.String("webhook_id", c.WebhookID), zap.String("event_id", eventID)}
	switch c.Change {
	case ChangePaused:
		level, msg = zapcore.WarnLevel, "webhook paused: most recent attempts failed; deliveries are kept and the receiver is probed"
		fields = append(fields, zap.Time("until", c.Until), zap.Float64("failure_ratio", c.FailureRatio), zap.Int("attempts", c.Attempts))
	case ChangeDisabled:
		level, msg = zapcore.WarnLevel, "webhook disabled; its deliveries are kept until it is enabled again"
		fields = append(fields, zap.String("cause", c.Cause), zap.String("reason", c.Reason))
	}
	if !c.FailingSince.IsZero() {
		fields = append(fields, zap.Time("failing_since", c.FailingSince))
	}
	if ce := d.log.Check(level, msg); ce != nil {
		ce.Write(fields...)
	}
	if d.onHealth != nil {
		d.onHealth(c)
	}
}

// pruneWindows forgets the breaker windows with no attempt in the last
// Window, so memory follows the webhooks recently attempted.
func (d *Dispatcher) pruneWindows(now time.Time) {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	for id, w := range d.windows {
		w.prune(now, d.breaker.Window)
		if len(w.samples) == 0 {
			delete(d.windows, id)
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
