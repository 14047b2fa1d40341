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
// send it. Webhook is nil when the webhook has been deleted since.
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
