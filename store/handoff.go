package store

import "time"

// Fresh is a delivery that EnqueueFresh just created, with its event: what
// a dispatcher needs to start it at once, without claiming it (Handoff).
type Fresh struct {
	Delivery Delivery
	Event    Event
	// eventValue is the event's value as Enqueue wrote it (eventvalue.go);
	// nil if Handoff must leave the delivery to ClaimDue. gen is the
	// leases' event generation before that write.
	eventValue []byte
	gen        uint64
}

// Handoff leases fresh deliveries (from EnqueueFresh, in the order it
// returned them) until now+lease, as ClaimDue would, and returns them as
// claimed, without scanning or reading anything: Enqueue's copies are
// exact. It takes a webhook's fresh deliveries, in order, only while
// accept approves (nil accepts all), that no claim has leased since they
// were written, and only if every other entry of the webhook's queue is
// leased to an attempt that has read it and whose lease
// has not expired: then nothing is due ahead of them, and taking them
// keeps ClaimDue's order. The webhook must be enabled. What it does not
// take stays queued for ClaimDue, as does any later fresh delivery of the
// same webhook.
//
// A dispatcher that starts the returned deliveries must start them after
// those it claimed before, and before those it claims after.
func (s *Store) Handoff(fresh []Fresh, now time.Time, lease time.Duration, accept func(webhookID string) bool) []Claimed {
	if len(fresh) == 0 || lease <= 0 {
		return nil
	}
	idx := s.index.Load()
	// How many of each webhook's fresh deliveries, from the first,
	// accept approves: asked before the leases' lock is taken, in the
	// order ClaimDue would ask.
	approved := map[string]int{}
	refused := map[string]bool{}
	for i := range fresh {
		wh := fresh[i].Delivery.WebhookID
		if refused[wh] {
			continue
		}
		w, ok := idx.byID[wh]
		if !ok || !w.Enabled || fresh[i].eventValue == nil || (accept != nil && !accept(wh)) {
			refused[wh] = true
			continue
		}
		approved[wh]++
	}
	until := now.Add(lease)
	var claimed []Claimed
	l := s.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	// Only a delivery never leased since Enqueue wrote it is known to
	// be queued and not leased: one ClaimDue took may even have been
	// delivered and left the queue. Each is offered once. offered
	// counts, by webhook, those still queued and not leased.
	offered := map[string]int{}
	marked := make([]bool, len(fresh))
	for i := range fresh {
		id := fresh[i].Delivery.ID
		if _, marked[i] = l.fresh[id]; marked[i] {
			offered[fresh[i].Delivery.WebhookID]++
			delete(l.fresh, id)
		}
	}
	clear(refused)
	for i := range fresh {
		f := &fresh[i]
		wh, id := f.Delivery.WebhookID, f.Delivery.ID
		if refused[wh] || !marked[i] || approved[wh] == 0 || !l.onlyLeasedAheadLocked(wh, offered[wh], now) {
			// ClaimDue has it (and may have the rest), or something
			// may be due ahead of it.
			refused[wh] = true
			continue
		}
		approved[wh]--
		d := f.Delivery
		ls := &claimLease{until: until, d: &d, event: f.eventValue, stale: f.gen != l.eventGen}
		l.by[id] = ls
		l.attachLocked(id, ls)
		// Counted as leased from now on, no longer as offered.
		offered[wh]--
		cl := Claimed{Delivery: d, Event: f.Event}
		if w, ok := idx.byID[wh]; ok {
			cl.Webhook = w.clone()
		}
		claimed = append(claimed, cl)
	}
	return claimed
}

// Release gives up the hand-off of fresh deliveries that will not be
// offered to Handoff (their dispatcher is busy or stopped): they are left
// to ClaimDue.
func (s *Store) Release(fresh []Fresh) {
	if len(fresh) == 0 {
		return
	}
	s.leases.mu.Lock()
	defer s.leases.mu.Unlock()
	for i := range fresh {
		delete(s.leases.fresh, fresh[i].Delivery.ID)
	}
}

// markFresh records deliveries Enqueue is about to write as never leased,
// until they are leased or offered to Handoff, and returns the event
// generation (see Fresh); unmarkFresh forgets them (their write failed).
func (l *leases) markFresh(ds []Delivery) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range ds {
		l.fresh[ds[i].ID] = struct{}{}
	}
	return l.eventGen
}

func (l *leases) unmarkFresh(ds []Delivery) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range ds {
		delete(l.fresh, ds[i].ID)
	}
}

// onlyLeasedAheadLocked reports whether every entry of the webhook's queue
// but the offered ones (its fresh deliveries not yet leased) is leased to
// an attempt that has read it, with a lease that has not expired at now.
// The count of entries may be high (a write in progress), never low, so a
// wrong answer is always false. The caller holds l.mu.
func (l *leases) onlyLeasedAheadLocked(webhookID string, offered int, now time.Time) bool {
	held := l.attached[webhookID]
	for _, ls := range held {
		if !ls.until.After(now) {
			return false // an expired lease: its delivery is due again
		}
	}
	return l.queued[webhookID]-int64(offered) == int64(len(held))
}

// queueDelta is a change in the number of entries of webhooks' queues, by
// webhook ID.
type queueDelta map[string]int64

// add adds n to the webhook's change.
func (q queueDelta) add(webhookID string, n int64) {
	q[webhookID] += n
}

// total returns the change over all webhooks.
func (q queueDelta) total() int64 {
	var t int64
	for _, n := range q {
		t += n
	}
	return t
}

// negate returns the opposite change.
func (q queueDelta) negate() queueDelta {
	out := make(queueDelta, len(q))
	for wh, n := range q {
		out[wh] = -n
	}
	return out
}

// queuedBy counts queue keys by webhook.
func queuedBy(keys []queuedKey) queueDelta {
	q := queueDelta{}
	for _, k := range keys {
		q.add(k.webhookID, 1)
	}
	return q
}
