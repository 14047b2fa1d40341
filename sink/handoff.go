package sink

import (
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// Handoffer is an Outbox that can lease deliveries just enqueued without a
// claim (store.Store.Handoff).
type Handoffer interface {
	// Handoff leases, in order, those of the fresh deliveries that nothing
	// is queued ahead of and that accept approves, and returns them as
	// claimed; the others stay queued for ClaimDue.
	Handoff(fresh []store.Fresh, now time.Time, lease time.Duration, accept func(webhookID string) bool) []store.Claimed
	// Release leaves fresh deliveries that will not be offered to Handoff
	// to ClaimDue.
	Release(fresh []store.Fresh)
}

// Offer starts deliveries just enqueued at once, if the Outbox is a
// Handoffer: those that nothing is queued ahead of and that capacity allows
// are leased and launched on the caller's goroutine, without waiting for
// the loop to claim them. The loop is woken for any it leaves, or if it is
// claiming at that moment, or the dispatcher is not running. Like Notify,
// it may be called at any time.
func (d *Dispatcher) Offer(fresh []store.Fresh) {
	if len(fresh) == 0 {
		return
	}
	h, ok := d.out.(Handoffer)
	if !ok {
		d.Notify()
		return
	}
	if !d.claimMu.TryLock() {
		h.Release(fresh)
		d.Notify()
		return
	}
	defer d.claimMu.Unlock()
	if !d.running() {
		h.Release(fresh)
		d.Notify()
		return
	}
	now := d.now()
	claims := h.Handoff(fresh, now, d.lease, d.acceptor(now, false))
	for i := range claims {
		d.launch(claims[i])
	}
	if len(claims) < len(fresh) {
		d.Notify()
	}
}

// running reports whether the dispatcher has started and not stopped.
func (d *Dispatcher) running() bool {
	select {
	case <-d.stopCh:
		return false
	default:
	}
	select {
	case <-d.loopDone:
		return false // stopped before it started
	default:
	}
	return d.started.Load()
}
