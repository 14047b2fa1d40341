package store

import (
	"math"
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
// is queued, and both drop the delivery's lease after every commit that may
// have changed it; ClaimDue's copy is read in a transaction that starts
// after it took the lease, or is what its scan read, known not to have
// changed up to that transaction's snapshot (see below). So a lease still
// in the map was taken, and its copy read, after the last change to the
// delivery.
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
//
// Leases also record which deliveries changed while a claim was running,
// so that ClaimDue can take a delivery from the copy of its queue entry
// that its scan read, instead of reading the entry again once it holds the
// lease (a point read per delivery, which searches every level of the LSM
// tree once a backlog has left the memtables). A claim registers
// (beginClaim) before its scan's transaction opens and reads the current
// generation then. While any claim is registered, every drop counts as a
// change: it advances the generation and records it against the delivery.
// A drop follows every commit that may change a leased delivery's queue
// entry: each completion batch's, and ClaimDue's for the candidates it did
// not claim (it may have deleted their entry or failed their delivery). A
// drop recorded at or before the claim's generation followed a commit that
// the scan, which opens later, sees; so does a drop made while no claim
// was registered. A completion batch also marks its deliveries (writing)
// from before its commit until it drops them (written). So the scanned
// copy is current unless the delivery is marked, or a drop of it was
// recorded after the claim's generation.
//
// ClaimDue asks when it takes the lease (take), so as not to decode a copy
// it will not use, and again once its transaction's snapshot is fixed
// (changedSince), which is what makes the copy safe: a completion that
// snapshot sees was marked before it committed, so it is still marked or
// its drop is recorded. ClaimDue's own writes need no mark: it writes for
// a delivery only when the entry its transaction read is stale, which
// takes a change that is marked or recorded itself, or when the event is
// missing, which a claim taking the copy finds too, and then reads the
// entry before it writes. A change committed after the snapshot is not
// seen by a claim that reads the entry either. Whoever commits a change
// while a claim holds the delivery's lease does not hold an unexpired
// lease of it (the claim's take would have failed): it is a worker whose
// lease expired, or a Complete without a lease, and its drop ends the
// claim's lease too, so Complete never uses the claim's out-of-date copy;
// the delivery may be handed out once more, as when a lease expires (see
// TestCompleteAfterLeaseTakenOver).
//
// A claim unregisters when it returns (endClaim), and the drops no
// registered claim can ask about (recorded at or before the earliest
// generation one began at) are forgotten: the record holds only the drops
// made while the longest running claim ran, and nothing while none runs.
type leases struct {
	mu sync.Mutex
	by map[string]*claimLease // by delivery ID

	// gen is the generation: the number of drops recorded.
	gen uint64
	// claims counts the registered claims by the generation each began at.
	claims map[uint64]int
	// dropped has, by delivery ID, the generation of the delivery's last
	// recorded drop; log has the recorded drops in generation order, for
	// endClaim to forget them.
	dropped map[string]uint64
	log     []droppedAt
	// committing counts, by delivery ID, the completion batches committing a
	// change to the delivery.
	committing map[string]int

	// queued counts, by webhook ID, the entries of the webhook's queue,
	// never fewer than there are: a writer adds its entries before it
	// commits them, and takes off the ones it deletes after its commit,
	// together with the drops that follow it. attached holds, by webhook
	// ID and then delivery ID, the leases whose claim has recorded what it
	// read (attach): the queue entry of each exists for as long as the
	// lease is in the map, since whoever deletes it drops the lease with
	// the count. Together they tell Handoff whether every entry of a
	// queue, other than the fresh ones it is offered, is leased.
	queued   map[string]int64
	attached map[string]map[string]*claimLease
	// fresh holds the IDs of deliveries written by EnqueueFresh that no
	// claim has leased and that have not been offered to Handoff yet.
	fresh map[string]struct{}
	// eventGen counts the calls to eventChanged, so that Handoff can tell
	// whether an event's value, as Enqueue wrote it, may have changed
	// since.
	eventGen uint64
}

// droppedAt is a recorded drop.
type droppedAt struct {
	gen        uint64
	deliveryID string
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

// webhookID returns the webhook of the leased delivery, or "" if its claim
// has not recorded it yet.
func (ls *claimLease) webhookID() string {
	if ls.d == nil {
		return ""
	}
	return ls.d.WebhookID
}

func newLeases() *leases {
	return &leases{
		by:         make(map[string]*claimLease),
		claims:     make(map[uint64]int),
		dropped:    make(map[string]uint64),
		committing: make(map[string]int),
		queued:     make(map[string]int64),
		attached:   make(map[string]map[string]*claimLease),
		fresh:      make(map[string]struct{}),
	}
}

// beginClaim registers a claim and returns the generation it began at,
// which it passes to take, changedSince and endClaim. ClaimDue calls it
// before its scan's transaction opens.
func (l *leases) beginClaim() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.claims[l.gen]++
	return l.gen
}

// endClaim unregisters a claim that began at generation since, and forgets
// the drops no registered claim can ask about: those recorded at or before
// the generation the earliest one began at, or all of them if none is
// registered.
func (l *leases) endClaim(since uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.claims[since]--; l.claims[since] <= 0 {
		delete(l.claims, since)
	}
	oldest := uint64(math.MaxUint64)
	for g := range l.claims {
		oldest = min(oldest, g)
	}
	n := 0
	for ; n < len(l.log) && l.log[n].gen <= oldest; n++ {
		r := l.log[n]
		if l.dropped[r.deliveryID] == r.gen {
			delete(l.dropped, r.deliveryID)
		}
		l.log[n] = droppedAt{} // let the ID go
	}
	if n == len(l.log) {
		l.log = l.log[:0]
		return
	}
	l.log = l.log[n:]
}

// changedLocked reports whether the delivery may have changed after
// generation since: a drop of it was recorded after since, or a completion
// batch is committing a change to it. The caller holds l.mu.
func (l *leases) changedLocked(deliveryID string, since uint64) bool {
	return l.dropped[deliveryID] > since || l.committing[deliveryID] > 0
}

// take leases the delivery until the given time, unless it is leased past
// now already. It returns nil if it did not take it. changed reports
// whether the delivery may have changed after generation since, that of
// the claim taking it (see leases); it is checked again by changedSince,
// and a claim taking a delivery that changed reads its queue entry.
func (l *leases) take(deliveryID string, now, until time.Time, since uint64) (ls *claimLease, changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, ok := l.by[deliveryID]
	if ok && old.until.After(now) {
		return nil, false
	}
	if ok {
		l.detachLocked(deliveryID, old)
	}
	delete(l.fresh, deliveryID)
	ls = &claimLease{until: until}
	l.by[deliveryID] = ls
	return ls, l.changedLocked(deliveryID, since)
}

// changedSince returns the deliveries among ids that may have changed after
// generation since, that of the claim asking (nil if none did). ClaimDue
// calls it once its transaction's snapshot is fixed: every commit that
// snapshot sees and its scan did not is then either being marked by
// writing or recorded by its drop (see leases).
func (l *leases) changedSince(since uint64, ids []string) map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	var changed map[string]bool
	for _, id := range ids {
		if !l.changedLocked(id, since) {
			continue
		}
		if changed == nil {
			changed = make(map[string]bool)
		}
		changed[id] = true
	}
	return changed
}

// writing marks the deliveries as being changed by a completion batch,
// which calls it before its transaction commits and written after.
func (l *leases) writing(deliveryIDs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range deliveryIDs {
		l.committing[id]++
	}
}

// heldID returns when the delivery's lease expires, if it is leased past
// now. It takes the ID as read out of a queue entry's value: the lookup
// allocates no string.
func (l *leases) heldID(deliveryID []byte, now time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, ok := l.by[string(deliveryID)]
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
		l.attachLocked(deliveryID, ls)
	}
}

// attachLocked records ls, whose claim has recorded what it read, among
// its webhook's attached leases. The caller holds l.mu.
func (l *leases) attachLocked(deliveryID string, ls *claimLease) {
	wh := ls.webhookID()
	m := l.attached[wh]
	if m == nil {
		m = make(map[string]*claimLease)
		l.attached[wh] = m
	}
	m[deliveryID] = ls
}

// detachLocked removes ls from its webhook's attached leases, if it is
// there. The caller holds l.mu.
func (l *leases) detachLocked(deliveryID string, ls *claimLease) {
	wh := ls.webhookID()
	if m := l.attached[wh]; m != nil && m[deliveryID] == ls {
		delete(m, deliveryID)
		if len(m) == 0 {
			delete(l.attached, wh)
		}
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
// read (its delivery's event is not known yet). It walks every lease: its
// callers are rare (EnqueueDelivery, for redelivery and test events, and
// uncount, after an Enqueue that failed half-way).
func (l *leases) eventChanged(eventID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.eventGen++
	for _, ls := range l.by {
		if ls.d == nil || ls.d.EventID == eventID {
			ls.stale = true
		}
	}
}

// written ends what writing began for the deliveries; if the batch
// committed, it drops their leases too (see drop), and applies queued, the
// change it made to the number of entries of each webhook's queue.
func (l *leases) written(deliveryIDs []string, committed bool, queued queueDelta) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range deliveryIDs {
		if l.committing[id]--; l.committing[id] <= 0 {
			delete(l.committing, id)
		}
	}
	if committed {
		l.dropLocked(deliveryIDs)
		l.countLocked(queued)
	}
}

// drop ends the leases of the given deliveries. It is called after every
// commit that may have changed them, so while a claim is registered it
// records each drop as a change (see leases).
func (l *leases) drop(deliveryIDs ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropLocked(deliveryIDs)
}

// dropCounted is drop for a commit that also changed the number of
// entries of queues by queued: the deliveries' leases end and the counts
// change together (see queued).
func (l *leases) dropCounted(queued queueDelta, deliveryIDs ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropLocked(deliveryIDs)
	l.countLocked(queued)
}

// count changes the number of entries of queues by queued. Writers call it
// with what they add before they commit, and with what they failed to add
// after (see queued).
func (l *leases) count(queued queueDelta) {
	if len(queued) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.countLocked(queued)
}

// countLocked is count for a caller that holds l.mu.
func (l *leases) countLocked(queued queueDelta) {
	for wh, n := range queued {
		if l.queued[wh] += n; l.queued[wh] <= 0 {
			delete(l.queued, wh)
		}
	}
}

// dropLocked is drop for a caller that holds l.mu.
func (l *leases) dropLocked(deliveryIDs []string) {
	for _, id := range deliveryIDs {
		if ls := l.by[id]; ls != nil {
			l.detachLocked(id, ls)
		}
		delete(l.by, id)
		if len(l.claims) == 0 {
			continue
		}
		l.gen++
		l.dropped[id] = l.gen
		l.log = append(l.log, droppedAt{gen: l.gen, deliveryID: id})
	}
}
