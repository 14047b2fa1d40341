package store

import (
	"sync"
	"time"
)

// leases are the deliveries ClaimDue handed out and Complete has not yet
// taken back, with when each lease expires. They live in memory only: a
// claim writes nothing to Badger, and a delivery keeps its place in its
// queue while it is leased. Memory is enough because Badger's directory
// lock keeps every other process out of the store, and every dispatcher in
// this process (the old and the new one during a config reload) shares the
// one Store: so when the store opens, no delivery is leased, and a crash
// loses leases, not deliveries.
//
// A lease also keeps what ClaimDue read, so that Complete need not read it
// again: the delivery, and its event's value as stored. The delivery's copy
// is exact for as long as the lease is in the map: only Complete (one batch
// at a time, see completer) and ClaimDue change a pending delivery once it
// is queued; Complete drops the delivery's lease after every commit that
// changed it, and ClaimDue reads in a transaction that starts after it took
// the lease. So a lease still in the map was taken, and its copy read,
// after the last change to the delivery.
//
// The event's copy is used only when its pending count is 1, and then it
// is exact unless marked stale: the one pending delivery it counts is the
// leased one, so no other completion can lower the count (a batch lowers it
// only for pending deliveries it finishes, and the leased delivery's own
// finish drops the lease), Enqueue writes only new events, and the only
// other writer, EnqueueDelivery, calls eventChanged after its commit while
// it holds Store.releaseMu, which every completion batch holds too. A lease
// taken after that call is read in a transaction that starts after the
// commit; one taken before is marked stale, whether or not its claim has
// read the event yet (attach keeps the mark), before any batch can use it.
type leases struct {
	mu sync.Mutex
	by map[string]*claimLease // by delivery ID
}

// claimLease is one delivery's lease.
type claimLease struct {
	until time.Time
	// d is nil until ClaimDue has read the delivery; event is then the
	// value of its event as stored (eventvalue.go).
	d     *Delivery
	event []byte
	// stale marks event as possibly out of date: EnqueueDelivery added a
	// delivery to an event that may be this one since the lease was taken.
	stale bool
}

func newLeases() *leases {
	return &leases{by: make(map[string]*claimLease)}
}

// take leases the delivery until the given time, unless it is leased past
// now already. It returns nil if it did not take it.
func (l *leases) take(deliveryID string, now, until time.Time) *claimLease {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ls, ok := l.by[deliveryID]; ok && ls.until.After(now) {
		return nil
	}
	ls := &claimLease{until: until}
	l.by[deliveryID] = ls
	return ls
}

// held returns when the delivery's lease expires, if it is leased past now.
func (l *leases) held(deliveryID string, now time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, ok := l.by[deliveryID]
	if !ok {
		return time.Time{}, false
	}
	return ls.until, ls.until.After(now)
}

// attach records in ls what its claim read, unless ls has been dropped
// (or replaced) meanwhile.
func (l *leases) attach(deliveryID string, ls *claimLease, d Delivery, event []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by[deliveryID] == ls {
		ls.d, ls.event = &d, event
	}
}

// state returns a copy of the delivery and its event's value as read by
// the claim that holds the delivery's lease; ok is false if it is not
// leased or its claim has not read it. event is nil if it may be stale.
func (l *leases) state(deliveryID string) (d Delivery, event []byte, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.by[deliveryID]
	if ls == nil || ls.d == nil {
		return Delivery{}, nil, false
	}
	if ls.stale {
		return *ls.d, nil, true
	}
	return *ls.d, ls.event, true
}

// eventChanged marks stale the event copy of every lease of a delivery of
// the event, and of every lease whose claim has not yet recorded what it
// read (its delivery's event is not known yet). It walks every lease:
// EnqueueDelivery, its only caller, is rare (redelivery and test events).
func (l *leases) eventChanged(eventID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ls := range l.by {
		if ls.d == nil || ls.d.EventID == eventID {
			ls.stale = true
		}
	}
}

// drop ends the leases of the given deliveries.
func (l *leases) drop(deliveryIDs ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range deliveryIDs {
		delete(l.by, id)
	}
}
