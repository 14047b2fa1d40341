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
type leases struct {
	mu    sync.Mutex
	until map[string]time.Time // by delivery ID
}

func newLeases() *leases {
	return &leases{until: make(map[string]time.Time)}
}

// take leases the delivery until the given time, unless it is leased past
// now already.
func (l *leases) take(deliveryID string, now, until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if u, ok := l.until[deliveryID]; ok && u.After(now) {
		return false
	}
	l.until[deliveryID] = until
	return true
}

// held returns when the delivery's lease expires, if it is leased past now.
func (l *leases) held(deliveryID string, now time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u, ok := l.until[deliveryID]
	return u, ok && u.After(now)
}

// drop ends the leases of the given deliveries.
func (l *leases) drop(deliveryIDs ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range deliveryIDs {
		delete(l.until, id)
	}
}
