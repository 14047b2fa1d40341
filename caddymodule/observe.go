package caddymodule

import (
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/sink"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// Names of the Caddy events the app emits (through Caddy's events app, from
// the delivery goroutines, never from the request path). Their data is
// documented in README.md.
const (
	eventDelivered = "echo3d_webhook_delivered"
	eventFailed    = "echo3d_webhook_failed"
	eventPaused    = "echo3d_webhook_paused"
	eventResumed   = "echo3d_webhook_resumed"
	eventDisabled  = "echo3d_webhook_disabled"
)

// eventsApp is Caddy's events app, through which the app emits its events.
type eventsApp = *caddyevents.App

// BreakerOptions configures the per-webhook circuit breaker. When at least
// FailureRatio of a webhook's attempts of the last Window failed (and there
// were at least MinAttempts of them), the webhook is paused: its deliveries
// stay in the outbox, using none of their retries, and after Pause one of
// them probes the receiver; each failed probe doubles the pause up to
// MaxPause, a successful one resumes delivery.
type BreakerOptions struct {
	// Off turns the breaker off: failing webhooks are retried on the
	// retry schedule only.
	Off bool `json:"off,omitempty"`

	// FailureRatio is the share of failed attempts, from 0 (exclusive)
	// to 1, that pauses a webhook. Default: 0.5.
	FailureRatio float64 `json:"failure_ratio,omitempty"`

	// MinAttempts is how many attempts the window must hold before the
	// ratio counts. Default: 10.
	MinAttempts int `json:"min_attempts,omitempty"`

	// Window is how far back attempts count. Default: 5m.
	Window caddy.Duration `json:"window,omitempty"`

	// Pause is how long a webhook stays paused before its first probe.
	// Default: 30s.
	Pause caddy.Duration `json:"pause,omitempty"`

	// MaxPause caps the pause, which doubles after each failed probe.
	// Default: 10m.
	MaxPause caddy.Duration `json:"max_pause,omitempty"`
}

// sinkConfig converts the options for the dispatcher (nil: defaults).
func (b *BreakerOptions) sinkConfig() sink.BreakerConfig {
	if b == nil {
		return sink.BreakerConfig{}
	}
	return sink.BreakerConfig{
		Off:          b.Off,
		FailureRatio: b.FailureRatio,
		MinAttempts:  b.MinAttempts,
		Window:       time.Duration(b.Window),
		Pause:        time.Duration(b.Pause),
		MaxPause:     time.Duration(b.MaxPause),
	}
}

// validateDelivery checks the breaker and disable_after options.
func (a *App) validateDelivery() error {
	b := a.Breaker
	if b == nil {
		return nil
	}
	switch {
	case b.FailureRatio < 0 || b.FailureRatio > 1:
		return fmt.Errorf("breaker: failure_ratio must be from 0 to 1, got %v", b.FailureRatio)
	case b.MinAttempts < 0:
		return fmt.Errorf("breaker: min_attempts must not be negative, got %d", b.MinAttempts)
	case b.Window < 0 || b.Pause < 0 || b.MaxPause < 0:
		return fmt.Errorf("breaker: window, pause and max_pause must not be negative")
	case b.Pause > 0 && b.MaxPause > 0 && b.MaxPause < b.Pause:
		return fmt.Errorf("breaker: max_pause %s is shorter than pause %s", time.Duration(b.MaxPause), time.Duration(b.Pause))
	}
	return nil
}

// provisionObservability registers the metrics into the config's registry
// and finds Caddy's events app.
func (a *App) provisionObservability(ctx caddy.Context) error {
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	ev, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading events app: %w", err)
	}
	a.events = ev.(*caddyevents.App)
	return nil
}

// observeResult counts a delivery attempt and emits echo3d_webhook_delivered
// or echo3d_webhook_failed. The dispatcher calls it from the attempt's
// goroutine.
func (a *App) observeResult(res sink.Result) {
	countResult(res)
	name := eventFailed
	if res.Outcome == sink.OutcomeSucceeded {
		name = eventDelivered
	}
	if !a.shouldEmit(name) {
		return
	}
	data := map[string]any{
		"webhook_id":  res.WebhookID,
		"event_id":    res.EventID,
		"delivery_id": res.DeliveryID,
		"attempt":     res.Attempt,
		"status":      res.Status,
		"duration_ms": float64(res.Duration.Microseconds()) / 1000,
	}
	if name == eventFailed {
		data["outcome"] = res.Outcome
		if res.Err != nil {
			data["error"] = res.Err.Error()
		} else {
			data["error"] = "HTTP " + strconv.Itoa(res.Status)
		}
		if !res.NextAttemptAt.IsZero() {
			data["next_attempt_at"] = res.NextAttemptAt
		}
	}
	a.events.Emit(a.ctx, name, data)
}

// observeHealth counts a webhook being paused or disabled and emits
// echo3d_webhook_paused, echo3d_webhook_resumed or echo3d_webhook_disabled.
// The dispatcher calls it from an attempt's goroutine.
func (a *App) observeHealth(c sink.HealthChange) {
	countHealth(c)
	var name string
	data := map[string]any{"webhook_id": c.WebhookID}
	switch c.Change {
	case sink.ChangePaused:
		name = eventPaused
		data["until"] = c.Until
		data["failure_ratio"] = c.FailureRatio
		data["attempts"] = c.Attempts
		data["reason"] = c.Reason
	case sink.ChangeResumed:
		name = eventResumed
	case sink.ChangeDisabled:
		name = eventDisabled
		data["cause"] = c.Cause
		data["reason"] = c.Reason
	default:
		return
	}
	if !c.FailingSince.IsZero() {
		data["failing_since"] = c.FailingSince
	}
	if a.shouldEmit(name) {
		a.events.Emit(a.ctx, name, data)
	}
}

// shouldEmit reports whether emitting the named event is worth building its
// data: something may observe it, and this config is still running.
func (a *App) shouldEmit(name string) bool {
	return a.events != nil && a.ctx.Context != nil && a.ctx.Err() == nil && a.events.ShouldEmit(name)
}

// parseBreaker parses `breaker off` or a breaker block.
func (a *App) parseBreaker(d *caddyfile.Dispenser) error {
	b := new(BreakerOptions)
	if d.NextArg() {
		if d.Val() != "off" || d.NextArg() {
			return d.Errf("breaker: want 'off' or a block, got %q", d.Val())
		}
		b.Off = true
		a.Breaker = b
		return nil
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("breaker: duplicate option %q", name)
		}
		seen[name] = true
		switch name {
		case "failure_ratio":
			if !d.NextArg() {
				return d.ArgErr()
			}
			r, err := strconv.ParseFloat(d.Val(), 64)
			if err != nil || r <= 0 || r > 1 {
				return d.Errf("breaker: failure_ratio must be a number above 0 and up to 1, got %q", d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			b.FailureRatio = r
		case "min_attempts":
			n, err := parseIntArg(d)
			if err != nil {
				return err
			}
			b.MinAttempts = n
		case "window", "pause", "max_pause":
			dur, err := parseDurationArg(d)
			if err != nil {
				return err
			}
			switch name {
			case "window":
				b.Window = dur
			case "pause":
				b.Pause = dur
			default:
				b.MaxPause = dur
			}
		default:
			return d.Errf("breaker: unrecognized option %q", name)
		}
	}
	a.Breaker = b
	return nil
}

// parseDisableAfter parses `disable_after <duration>|off`.
func (a *App) parseDisableAfter(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	if d.Val() == "off" {
		if d.NextArg() {
			return d.ArgErr()
		}
		a.DisableAfter = -1
		return nil
	}
	d.Prev()
	dur, err := parseDurationArg(d)
	if err != nil {
		return err
	}
	a.DisableAfter = dur
	return nil
}

// Health returns a webhook's Health, or the zero Health when the store is
// not open.
func (o lazyOutbox) Health(webhookID string) store.Health {
	st, err := o.st()
	if err != nil {
		return store.Health{}
	}
	return st.Health(webhookID)
}

// SetHealth stores a webhook's Health.
func (o lazyOutbox) SetHealth(webhookID string, h store.Health) error {
	st, err := o.st()
	if err != nil {
		return err
	}
	return st.SetHealth(webhookID, h)
}
