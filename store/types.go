// Package store keeps webhooks, derived events, the delivery outbox and the
// record of delivery attempts in an embedded Badger v4 database. It knows
// nothing about Caddy; the caddymodule package shares one *Store per
// directory across config reloads.
package store

import (
	"errors"
	"time"
)

// ErrNotFound is returned (wrapped) when a webhook, event or delivery does
// not exist.
var ErrNotFound = errors.New("not found")

// Webhook is one registered receiver. Its JSON form is the one the admin API
// returns.
type Webhook struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	URL         string    `json:"url"`
	Description string    `json:"description"`
	Triggers    []string  `json:"triggers"`
	APIKey      string    `json:"apiKey"`
	Enabled     bool      `json:"enabled"`
	Secret      string    `json:"secret,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	// DisabledReason says why the webhook was disabled by the delivery
	// system (for example "410 Gone"); empty when enabled or disabled by an
	// operator.
	DisabledReason string `json:"disabledReason,omitempty"`
	// PreviousSecrets holds secrets replaced by a rotation; each keeps
	// signing alongside Secret until it expires.
	PreviousSecrets []PreviousSecret `json:"previousSecrets,omitempty"`
}

// PreviousSecret is a rotated-out secret and the end of its overlap.
type PreviousSecret struct {
	Secret    string    `json:"secret"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// SigningSecrets returns the current secret followed by the previous ones
// still inside their overlap at now.
func (w *Webhook) SigningSecrets(now time.Time) []string {
	out := []string{w.Secret}
	for _, p := range w.PreviousSecrets {
		if now.Before(p.ExpiresAt) {
			out = append(out, p.Secret)
		}
	}
	return out
}

// Subscribed reports whether the webhook receives the named trigger.
func (w *Webhook) Subscribed(trigger string) bool {
	for _, t := range w.Triggers {
		if t == trigger {
			return true
		}
	}
	return false
}

// Event is one derived event. Payload is the exact JSON body sent to every
// receiver, so the bytes signed are the bytes stored.
type Event struct {
	ID        string    `json:"id"`
	Trigger   string    `json:"trigger"`
	APIKey    string    `json:"apiKey"`
	Payload   []byte    `json:"payload"`
	CreatedAt time.Time `json:"createdAt"`
}

// Delivery states.
const (
	StatePending   = "pending"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

// Delivery is one event on its way to one webhook. ID is the value of the
// webhook-id header: the same on every attempt.
type Delivery struct {
	ID            string    `json:"id"`
	EventID       string    `json:"eventId"`
	WebhookID     string    `json:"webhookId"`
	Seq           uint64    `json:"seq"`
	State         string    `json:"state"`
	Attempts      int       `json:"attempts"`
	NextAttemptAt time.Time `json:"nextAttemptAt"`
	LastStatus    int       `json:"lastStatus,omitempty"`
	LastError     string    `json:"lastError,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
}

// Attempt records one HTTP attempt of a delivery.
type Attempt struct {
	DeliveryID   string        `json:"deliveryId"`
	EventID      string        `json:"eventId"`
	WebhookID    string        `json:"webhookId"`
	Number       int           `json:"attempt"`
	At           time.Time     `json:"at"`
	Duration     time.Duration `json:"durationNs"`
	Status       int           `json:"status"`
	Error        string        `json:"error,omitempty"`
	ResponseBody string        `json:"responseBody,omitempty"`
}

// Claimed is a due delivery leased to one dispatcher, with what it needs to
// send it. Webhook is nil when the webhook has been deleted since; it is a
// copy of the store's, shared by the deliveries of the webhook claimed
// together, so callers must not modify it.
type Claimed struct {
	Delivery Delivery
	Event    Event
	Webhook  *Webhook
}

// Outcome tells Complete what happened to a claimed delivery.
type Outcome struct {
	// State is StatePending (retry at NextAttemptAt), StateSucceeded or
	// StateFailed (no more automatic attempts).
	State         string
	NextAttemptAt time.Time
}

// Breaker states of Health.Breaker.
const (
	// BreakerClosed: deliveries flow (the zero value).
	BreakerClosed = ""
	// BreakerOpen: the webhook's recent attempts mostly failed. Nothing is
	// claimed before HoldUntil; after it, one attempt at a time probes the
	// receiver until one succeeds.
	BreakerOpen = "open"
)

// Health is what the delivery system remembers about a webhook's receiver
// between attempts: its circuit breaker, a hold on its deliveries, and how
// long it has been failing. It is stored so that it survives reloads and
// restarts; the zero value is a healthy webhook.
type Health struct {
	// Breaker is BreakerClosed or BreakerOpen.
	Breaker string `json:"breaker,omitempty"`
	// HoldUntil: no delivery of the webhook is claimed before this time
	// (the next probe of an open breaker, or a Retry-After).
	HoldUntil time.Time `json:"holdUntil,omitzero"`
	// Pause is the open breaker's current pause between probes.
	Pause time.Duration `json:"pauseNs,omitempty"`
	// FailingSince is the first failed attempt since the last success;
	// zero when the last attempt succeeded.
	FailingSince time.Time `json:"failingSince,omitzero"`
	// LastFailureAt is the latest failed attempt (to a minute).
	LastFailureAt time.Time `json:"lastFailureAt,omitzero"`
	// DisabledAt is when the delivery system disabled the webhook (410
	// Gone, or failing too long); enabling the webhook clears it.
	DisabledAt time.Time `json:"disabledAt,omitzero"`
}

// IsZero reports whether h is the health of a webhook with nothing to
// remember.
func (h Health) IsZero() bool {
	return h.Breaker == BreakerClosed && h.HoldUntil.IsZero() && h.Pause == 0 &&
		h.FailingSince.IsZero() && h.LastFailureAt.IsZero() && h.DisabledAt.IsZero()
}
