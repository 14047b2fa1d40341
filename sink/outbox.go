package sink

import (
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// Outbox is the durable queue the Dispatcher works from; *store.Store
// implements it.
type Outbox interface {
	// ClaimDue leases up to limit deliveries due at now, for lease, in
	// (due time, Seq) order within a webhook, skipping disabled and held
	// webhooks. accept is asked about each candidate's webhook in that
	// order; a candidate is claimed only if it returns true, and a webhook
	// turned down gets no later candidate.
	ClaimDue(now time.Time, lease time.Duration, limit int, accept func(webhookID string) bool) ([]store.Claimed, error)
	// Complete records the end of a claimed delivery's attempt (nil when no
	// HTTP attempt was made) and its outcome, releasing the lease.
	Complete(deliveryID string, attempt *store.Attempt, out store.Outcome, now time.Time) error
	// NextDue returns the earliest time a delivery becomes due (including
	// the expiry of a lease), and false when there is none.
	NextDue() (time.Time, bool, error)
	// DisableWebhook disables a webhook, recording why.
	DisableWebhook(id, reason string) error
	// Health returns what is remembered about a webhook's receiver; it
	// must be cheap (it is asked about every candidate of a claim).
	Health(webhookID string) store.Health
	// SetHealth stores a webhook's Health; a hold in it takes effect for
	// the next claim.
	SetHealth(webhookID string, h store.Health) error
}
