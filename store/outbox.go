package store

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// eventMissingError is the LastError of a delivery whose event vanished.
const eventMissingError = "event missing from store"

// write is one entry of a multi-transaction write. queued marks the entry
// that puts a delivery in its webhook's queue, counted by QueueDepth.
type write struct {
	key, val []byte
	queued   bool
	// eventID is set, in Enqueue's writes, on an event's value and on its
	// deliveries' queue entries; pending is the count an event's value
	// stores. Both let Enqueue correct the counts after committing only
	// some of its writes (uncount).
	eventID string
	pending uint64
}

// Enqueue records events and creates one pending delivery, due now, for
// every enabled webhook of the event's API key subscribed to its trigger,
// in event order and then webhook CreatedAt order. An event is stored only
// if it got a delivery, with the number of its deliveries as its pending
// count (eventvalue.go). When Enqueue returns nil, everything is in
// Badger's value log. The result is never nil.
//
// Event IDs must be new: Enqueue reads nothing, so an event already stored
// under the same ID is replaced, pending count included. (The caddymodule
// package gives every event a random ID; EnqueueDelivery adds a delivery to
// a stored event.) An ID repeated within events is counted once for all
// its deliveries, the last event's fields winning.
func (s *Store) Enqueue(events []Event, now time.Time) ([]Delivery, error) {
	deliveries, _, err := s.enqueue(events, now, false)
	return deliveries, err
}

// EnqueueFresh is Enqueue, returning the deliveries with their events, for
// Handoff. The caller offers them to Handoff or gives them up with
// Release: until then, or until a claim leases them, the store remembers
// their IDs.
func (s *Store) EnqueueFresh(events []Event, now time.Time) ([]Fresh, error) {
	_, fresh, err := s.enqueue(events, now, true)
	return fresh, err
}

// enqueue is Enqueue, which also returns the deliveries as Fresh if
// withFresh is set.
func (s *Store) enqueue(events []Event, now time.Time, withFresh bool) ([]Delivery, []Fresh, error) {
	deliveries := []Delivery{}
	if s.db.IsClosed() {
		return deliveries, nil, fmt.Errorf("enqueuing: %w", badger.ErrDBClosed)
	}
	idx := s.index.Load()
	var writes []write
	// counts has the deliveries created so far per event ID, for IDs that
	// appear more than once in events; occurs how often each ID appears.
	var counts map[string]uint64
	var occurs map[string]int
	// eventOf has, for each delivery, the index of its event in events;
	// valueAt, for each event, the index of its value in writes (-1: it
	// has no delivery).
	var eventOf, valueAt []int
	if withFresh {
		valueAt = make([]int, len(events))
	}
	for i := range events {
		ev := &events[i]
		first := len(writes)
		if withFresh {
			valueAt[i] = -1
		}
		var n uint64
		for _, w := range idx.byAPIKey[ev.APIKey] {
			if !w.Enabled || !w.Subscribed(ev.Trigger) {
				continue
			}
			if n == 0 {
				if err := validateEventID(ev.ID); err != nil {
					return []Delivery{}, nil, fmt.Errorf("enqueuing: %w", err)
				}
				// The event's place, filled in below once its count is
				// known: it goes first, so that it is committed no later
				// than any queue entry that refers to it.
				writes = append(writes, write{})
			}
			d, dw, err := s.newDelivery(ev.ID, w.ID, now)
			if err != nil {
				return []Delivery{}, nil, fmt.Errorf("enqueuing: %w", err)
			}
			for i := range dw {
				if dw[i].queued {
					dw[i].eventID = ev.ID
				}
			}
			writes = append(writes, dw...)
			deliveries = append(deliveries, d)
			if withFresh {
				eventOf = append(eventOf, i)
			}
			n++
		}
		if n == 0 {
			continue
		}
		if len(events) > 1 {
			if counts == nil {
				counts = make(map[string]uint64)
				occurs = make(map[string]int)
			}
			counts[ev.ID] += n
			n = counts[ev.ID]
			occurs[ev.ID]++
		}
		writes[first] = write{key: eventKey(ev.ID), val: encodeEventValue(ev, n), eventID: ev.ID, pending: n}
		if withFresh {
			valueAt[i] = first
		}
	}
	if len(writes) == 0 {
		return deliveries, nil, nil
	}
	var gen uint64
	if withFresh {
		gen = s.leases.markFresh(deliveries)
	}
	committed, err := s.writeInOrder(writes)
	if err != nil {
		if withFresh {
			s.leases.unmarkFresh(deliveries)
		}
		if uerr := s.uncount(writes[:committed]); uerr != nil {
			return []Delivery{}, nil, fmt.Errorf("enqueuing: %w (and correcting the pending counts of the events committed before: %v)", err, uerr)
		}
		return []Delivery{}, nil, fmt.Errorf("enqueuing: %w", err)
	}
	if !withFresh {
		return deliveries, nil, nil
	}
	fresh := make([]Fresh, len(deliveries))
	for i, d := range deliveries {
		ev := &events[eventOf[i]]
		fresh[i] = Fresh{Delivery: d, Event: *ev, gen: gen}
		// An ID repeated in events has one value for all its
		// occurrences, the last: leave it for ClaimDue.
		if occurs[ev.ID] <= 1 {
			fresh[i].eventValue = writes[valueAt[eventOf[i]]].val
		}
	}
	return deliveries, fresh, nil
}

// validateEventID rejects event IDs that would break the key layout.
func validateEventID(id string) error {
	if id == "" {
		return errors.New("event ID is empty")
	}
	return nil
}

// newDelivery returns a fresh pending delivery due at now and the writes
// that store it: the delivery and its queue entry. Due when it was
// created, it is not displaced, so it has no age index entry (see
// OldestPending). None of the writes reads anything, so Enqueue never
// conflicts with the dispatchers. The caller counts the delivery in its
// event's value.
func (s *Store) newDelivery(eventID, webhookID string, now time.Time) (Delivery, []write, error) {
	seq, err := s.deliverySeq.Next()
	if err != nil {
		return Delivery{}, nil, fmt.Errorf("next delivery sequence: %w", err)
	}
	d := Delivery{
		ID:            newDeliveryID(),
		EventID:       eventID,
		WebhookID:     webhookID,
		Seq:           seq,
		State:         StatePending,
		NextAttemptAt: now,
		CreatedAt:     now,
		UpdatedAt:     now,
	}
	val, err := encodeRecord(&d)
	if err != nil {
		return Delivery{}, nil, fmt.Errorf("encoding delivery %s: %w", d.ID, err)
	}
	return d, []write{
		{key: deliveryKey(d.ID), val: val},
		{key: webhookQueueKey(webhookID, d.NextAttemptAt, d.Seq), val: queueEntryValue(d.ID, val), queued: true},
	}, nil
}

// writeInOrder commits writes in one transaction or, if they do not fit,
// in several consecutive ones, so that a write is never committed before
// an earlier one. It returns how many leading writes it committed: all of
// them unless it fails.
func (s *Store) writeInOrder(writes []write) (committed int, err error) {
	qk := queueKeys(writes)
	s.bounds.lower(qk, nil)
	defer s.bounds.lower(qk, nil)
	// Counted before they exist, and uncounted if they never do (see
	// leases.queued).
	s.leases.count(queuedBy(qk))
	defer func() {
		if err != nil {
			s.leases.count(queuedBy(queueKeys(writes[committed:])).negate())
		}
	}()
	for committed < len(writes) {
		var n int
		for range maxConflictRetries {
			n, err = s.writeSome(writes[committed:])
			if !errors.Is(err, badger.ErrConflict) {
				break
			}
		}
		if err != nil {
			return committed, err
		}
		for _, w := range writes[committed : committed+n] {
			if w.queued {
				s.depth.Add(1)
			}
		}
		committed += n
	}
	return committed, nil
}

// writeSomeHook, if set (by tests), is called by writeSome with the number
// of writes left; it returns how many of them writeSome may put in its
// transaction (fewer splits the writes), or an error that fails it.
var writeSomeHook func(left int) (int, error)

// writeSome commits as many leading writes as fit in one transaction and
// returns how many.
func (s *Store) writeSome(writes []write) (int, error) {
	if writeSomeHook != nil {
		n, err := writeSomeHook(len(writes))
		if err != nil {
			return 0, err
		}
		writes = writes[:n]
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	n := 0
	for _, w := range writes {
		err := txn.SetEntry(badger.NewEntry(w.key, w.val))
		if errors.Is(err, badger.ErrTxnTooBig) && n > 0 {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("writing %q: %w", w.key, err)
		}
		n++
	}
	if err := txn.Commit(); err != nil {
		return 0, fmt.Errorf("committing: %w", err)
	}
	return n, nil
}

// uncount corrects, after Enqueue committed only the leading writes of
// committed and failed, the pending count of every event whose value was
// committed: it takes off the deliveries that were not, so that the event
// expires once the committed ones finish (with none, at once) instead of
// never. Their deliveries may already be running, so it lowers the count
// as stored now, as a completion would.
func (s *Store) uncount(committed []write) error {
	stored := map[string]uint64{} // the count of the last committed value
	queued := map[string]uint64{} // committed deliveries
	for _, w := range committed {
		switch {
		case w.eventID == "":
		case w.queued:
			queued[w.eventID]++
		default:
			stored[w.eventID] = w.pending
		}
	}
	missing := map[string]uint64{}
	for id, n := range stored {
		if n > queued[id] {
			missing[id] = n - queued[id]
		}
	}
	if len(missing) == 0 {
		return nil
	}
	s.releaseMu.Lock()
	defer s.releaseMu.Unlock()
	err := s.update(func(txn *badger.Txn) error {
		for id, m := range missing {
			val, err := getRaw(txn, eventKey(id), "event "+id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			n, err := eventPending(val)
			if err == nil {
				n -= min(n, m)
				val, err = withPending(val, n)
			}
			if err != nil {
				return fmt.Errorf("decoding event %s: %w", id, err)
			}
			var ttl time.Duration
			if n == 0 {
				ttl = s.recordTTL
			}
			if err := setEventValue(txn, id, val, ttl); err != nil {
				return err
			}
		}
		return nil
	})
	// A lease's copy of these events is stale now, as after
	// EnqueueDelivery (see leases).
	for id := range missing {
		s.leases.eventChanged(id)
	}
	return err
}

// EnqueueDelivery creates one fresh pending delivery of ev to the webhook,
// due now, whether or not the webhook is enabled or subscribed (for
// redelivery and test events). ev is stored unless an event with its ID
// already is; either way it is kept until the new delivery finishes. It
// returns a wrapped ErrNotFound if the webhook does not exist.
func (s *Store) EnqueueDelivery(ev Event, webhookID string, now time.Time) (Delivery, error) {
	if _, ok := s.index.Load().byID[webhookID]; !ok {
		return Delivery{}, fmt.Errorf("enqueuing delivery: webhook %s: %w", webhookID, ErrNotFound)
	}
	if err := validateEventID(ev.ID); err != nil {
		return Delivery{}, fmt.Errorf("enqueuing delivery: %w", err)
	}
	d, writes, err := s.newDelivery(ev.ID, webhookID, now)
	if err != nil {
		return Delivery{}, fmt.Errorf("enqueuing delivery: %w", err)
	}
	qk := queueKeys(writes)
	s.bounds.lower(qk, nil)
	counted := queuedBy(qk)
	s.leases.count(counted)
	s.releaseMu.Lock()
	err = s.update(func(txn *badger.Txn) error {
		if err := addPending(txn, &ev); err != nil {
			return err
		}
		for _, w := range writes {
			if err := txn.Set(w.key, w.val); err != nil {
				return fmt.Errorf("writing %q: %w", w.key, err)
			}
		}
		return nil
	})
	// After the commit, and before a completion batch can run: a lease
	// taken from now on is read after the commit, and one taken before is
	// marked here, before any batch uses its copy (see leases). Marking
	// after a failed commit only costs the batch a read.
	s.leases.eventChanged(ev.ID)
	s.releaseMu.Unlock()
	s.bounds.lower(qk, nil)
	if err != nil {
		s.leases.count(counted.negate())
		return Delivery{}, fmt.Errorf("enqueuing delivery: %w", err)
	}
	s.depth.Add(1)
	return d, nil
}

// addPending counts one more pending delivery in the stored event with ev's
// ID, and removes its TTL if it has one; if no event with that ID is
// stored, it stores ev with a count of 1. The caller holds s.releaseMu.
func addPending(txn *badger.Txn, ev *Event) error {
	key := eventKey(ev.ID)
	val, err := getRaw(txn, key, "event "+ev.ID)
	if errors.Is(err, ErrNotFound) {
		return setEventValue(txn, ev.ID, encodeEventValue(ev, 1), 0)
	}
	if err != nil {
		return err
	}
	n, err := eventPending(val)
	if err == nil {
		val, err = withPending(val, n+1)
	}
	if err != nil {
		return fmt.Errorf("decoding event %s: %w", ev.ID, err)
	}
	return setEventValue(txn, ev.ID, val, 0)
}

// setEventValue writes the value of the event with that ID, expiring after
// ttl unless ttl is 0.
func setEventValue(txn *badger.Txn, id string, val []byte, ttl time.Duration) error {
	e := badger.NewEntry(eventKey(id), val)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	if err := txn.SetEntry(e); err != nil {
		return fmt.Errorf("writing event %s: %w", id, err)
	}
	return nil
}

// errTaken reports that another claimer (or Complete) moved a candidate
// first. ClaimDue then leaves that webhook's later candidates alone, so they
// cannot overtake it.
var errTaken = errors.New("queue entry taken")

// claimHook, if set (by tests), runs in ClaimDue after it has taken its
// leases and before its transaction opens.
var claimHook func()

// candidate is a due queue entry found by ClaimDue's scan.
type candidate struct {
	key        []byte
	deliveryID string
	webhookID  string
	due, seq   uint64
	// val is a copy of the entry's value as the scan read it.
	val []byte
	// scanned is the delivery val carries, once ClaimDue has leased it, if
	// it is a pending delivery whose entry this is and had not changed
	// when the lease was taken; nil otherwise. claim takes the delivery
	// from it instead of reading the entry, unless ClaimDue clears it
	// because the delivery changed before its transaction's snapshot.
	scanned *Delivery
}

// scannedDelivery returns the delivery c.val carries if it is a pending
// delivery whose queue entry c is; nil if it is not, or c.val is an entry
// of an earlier version (which carries only the ID) or does not decode.
func scannedDelivery(c *candidate) *Delivery {
	d, carried, err := queueEntryDelivery(c.val)
	if err != nil || !carried || !isEntryOf(&d, c.deliveryID, c.key) {
		return nil
	}
	return &d
}

// isEntryOf reports whether key, holding the delivery ID id, is the queue
// entry of d, a pending delivery: if not, the entry is stale.
func isEntryOf(d *Delivery, id string, key []byte) bool {
	return d.ID == id && d.State == StatePending && bytes.Equal(webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq), key)
}

// ClaimDue leases up to limit deliveries due at or before now whose webhook
// accept approves (nil accepts all). It walks the webhooks in the order
// their first delivery became due and, for each, its deliveries in queue
// order (due time, then sequence), moving on to the next webhook at the
// first one accept turns down. Deliveries of disabled webhooks, and of
// webhooks held (Health.HoldUntil) past now, are not looked at. A claimed
// delivery is leased in memory until now+lease (see leases) and keeps its
// place in its queue: no other ClaimDue hands it out before the lease
// expires, and if it is not completed by then, it is due again. A claim
// writes nothing, except to fail a delivery whose event is missing (it is
// skipped) or drop a queue entry that no longer matches its delivery.
// Webhook is nil for deliveries of deleted webhooks.
//
// The delivery is taken from the queue entry as the scan for due entries
// read it; the entry is read again, once the lease is held, only if the
// delivery may have changed since the scan (see leases), if the entry does
// not carry a pending delivery that it is the entry of, or before the
// claim writes anything for it.
func (s *Store) ClaimDue(now time.Time, lease time.Duration, limit int, accept func(webhookID string) bool) ([]Claimed, error) {
	if lease <= 0 {
		return nil, fmt.Errorf("claiming deliveries: lease %v is not positive", lease)
	}
	if limit <= 0 {
		return []Claimed{}, nil
	}
	// Before the scan's transaction opens: a change recorded at or before
	// since was committed before, and the scan sees it (see leases).
	since := s.leases.beginClaim()
	defer s.leases.endClaim(since)
	cands, err := s.dueCandidates(now, limit, accept)
	if err != nil {
		return nil, err
	}
	if len(cands) == 0 {
		return []Claimed{}, nil
	}

	// Lease first, read after: a Complete that ended a lease before this
	// call took it has committed before the transaction below starts, so
	// its changes are seen: the scan saw them, or its drop is recorded as
	// a change since the scan and the transaction reads the entry again
	// (see leases). A webhook whose earlier delivery could not be leased
	// gets none of its later ones in this call, so deliveries never
	// overtake each other.
	until := now.Add(lease)
	leased := make([]candidate, 0, len(cands))
	taken := make(map[string]*claimLease, len(cands))
	skip := map[string]bool{}
	var scanned []string // the IDs of the leased candidates with a scanned delivery
	for _, c := range cands {
		if skip[c.webhookID] {
			continue
		}
		ls, changed := s.leases.take(c.deliveryID, now, until, since)
		if ls == nil {
			skip[c.webhookID] = true
			continue
		}
		taken[c.deliveryID] = ls
		if !changed {
			c.scanned = scannedDelivery(&c)
		}
		if c.scanned != nil {
			scanned = append(scanned, c.deliveryID)
		}
		leased = append(leased, c)
	}
	if claimHook != nil {
		claimHook()
	}

	// At most one of each per leased candidate: sized once, as a claim in
	// a drain takes dozens and Claimed is large.
	claimed := make([]Claimed, 0, len(leased))
	events := make([][]byte, 0, len(leased))
	var delta queueDelta
	err = s.update(func(txn *badger.Txn) error {
		claimed, events, delta = claimed[:0], events[:0], queueDelta{}
		// Opened after the leases were taken (see eventCursor).
		cur := &eventCursor{db: s.db}
		defer cur.close()
		clear(skip)
		// txn's snapshot is fixed: every change it sees that the scan
		// did not is known by now (see leases), and the entries of those
		// deliveries are read.
		var changed map[string]bool
		if len(scanned) > 0 {
			changed = s.leases.changedSince(since, scanned)
		}
		for _, c := range leased {
			if skip[c.webhookID] {
				continue
			}
			if changed[c.deliveryID] {
				c.scanned = nil
			}
			cl, ev, ok, err := s.claim(txn, cur, c, now, delta)
			if errors.Is(err, errTaken) {
				skip[c.webhookID] = true
				continue
			}
			if err != nil {
				return err
			}
			if ok {
				claimed = append(claimed, cl)
				events = append(events, ev)
			}
		}
		return nil
	})
	if err != nil {
		for _, c := range leased {
			s.leases.drop(c.deliveryID)
		}
		return nil, fmt.Errorf("claiming deliveries: %w", err)
	}
	s.depth.Add(delta.total())
	shareClones(claimed)
	// Keep what was read with the leases, for Complete; give back the
	// leases of what was not claimed after all, together with the count
	// of the queue entries the claim deleted (see leases.queued).
	kept := make(map[string]bool, len(claimed))
	for i, c := range claimed {
		kept[c.Delivery.ID] = true
		s.leases.attach(c.Delivery.ID, taken[c.Delivery.ID], c.Delivery, events[i])
	}
	var unkept []string
	for _, c := range leased {
		if !kept[c.deliveryID] {
			unkept = append(unkept, c.deliveryID)
		}
	}
	s.leases.dropCounted(delta, unkept...)
	return claimed, nil
}

// shareClones replaces the index's webhooks in claimed by copies, one per
// webhook: a claim in a drain takes dozens of one webhook's deliveries.
func shareClones(claimed []Claimed) {
	var clones map[*Webhook]*Webhook
	for i := range claimed {
		w := claimed[i].Webhook
		if w == nil {
			continue
		}
		c, ok := clones[w]
		if !ok {
			if clones == nil {
				clones = make(map[*Webhook]*Webhook, 1)
			}
			c = w.clone()
			clones[w] = c
		}
		claimed[i].Webhook = c
	}
}

// claim reads one leased candidate in txn, adding to delta the change in
// the number of queued deliveries; it returns the event's value as stored
// too (eventvalue.go), read through cur (or in txn, if cur does not find
// it). The delivery is c.scanned if set, and read from its queue entry
// otherwise.
// ok is false when the candidate is no longer claimable: completed or moved
// meanwhile (errTaken), inconsistent (its queue entry is dropped) or
// without event (the delivery is failed).
func (s *Store) claim(txn *badger.Txn, cur *eventCursor, c candidate, now time.Time, delta queueDelta) (Claimed, []byte, bool, error) {
	var d Delivery
	if c.scanned != nil {
		d = *c.scanned
	} else {
		var ok bool
		var err error
		if d, ok, err = readQueueEntry(txn, c, delta); err != nil || !ok {
			return Claimed{}, nil, false, err
		}
	}

	raw, err := cur.get(d.EventID)
	if errors.Is(err, ErrNotFound) {
		// Acted on only as txn sees it.
		raw, err = getRaw(txn, eventKey(d.EventID), "event "+d.EventID)
	}
	if errors.Is(err, ErrNotFound) {
		if c.scanned != nil {
			// Read the queue entry before writing, as a claim that did
			// not skip it does: so that a change committed meanwhile is
			// seen, or makes the commit conflict.
			c.scanned = nil
			return s.claim(txn, cur, c, now, delta)
		}
		if err := deleteKey(txn, c.key); err != nil {
			return Claimed{}, nil, false, err
		}
		d.State = StateFailed
		d.LastError = eventMissingError
		d.UpdatedAt = now
		delta.add(c.webhookID, -1)
		// Without its event, there is no count to release.
		return Claimed{}, nil, false, s.finish(txn, &d)
	}
	if err != nil {
		return Claimed{}, nil, false, err
	}
	cl := Claimed{Delivery: d}
	if cl.Event, _, err = decodeEventValue(raw); err != nil {
		return Claimed{}, nil, false, fmt.Errorf("decoding event %s: %w", d.EventID, err)
	}
	// The index's own webhook: ClaimDue hands out copies (shareClones).
	if w, ok := s.index.Load().byID[d.WebhookID]; ok {
		cl.Webhook = w
	}
	return cl, raw, true, nil
}

// readQueueEntry reads in txn the delivery of a leased candidate from its
// queue entry (or, for an entry of an earlier version, from dl/). It
// returns errTaken if the entry is gone; ok is false if the entry does not
// match its delivery, and it then deletes the stale entry, adding -1 to
// delta.
func readQueueEntry(txn *badger.Txn, c candidate, delta queueDelta) (d Delivery, ok bool, err error) {
	item, err := txn.Get(c.key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Delivery{}, false, errTaken
	}
	if err != nil {
		return Delivery{}, false, fmt.Errorf("reading queue entry: %w", err)
	}
	var carried bool
	err = item.Value(func(v []byte) error {
		var err error
		d, carried, err = queueEntryDelivery(v)
		return err
	})
	if err != nil {
		return Delivery{}, false, err
	}
	if !carried {
		// An entry of an earlier version: the delivery is under dl/ only.
		err := getRecord(txn, deliveryKey(c.deliveryID), "delivery", c.deliveryID, &d)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Delivery{}, false, err
		}
	}
	if !isEntryOf(&d, c.deliveryID, c.key) {
		// A queue entry that does not match its delivery is stale.
		delta.add(c.webhookID, -1)
		return Delivery{}, false, deleteKey(txn, c.key)
	}
	return d, true, nil
}

// finish stores a delivery that has left the queue with the record TTL and,
// if it was displaced, drops it from the age index (see OldestPending):
// d.NextAttemptAt must still be the due time it had while pending. The
// caller releases the delivery's count in its event (see batchEvents).
func (s *Store) finish(txn *badger.Txn, d *Delivery) error {
	if err := setRecord(txn, deliveryKey(d.ID), "delivery", d.ID, d, s.recordTTL); err != nil {
		return err
	}
	if !displaced(d) {
		return nil
	}
	return deleteKey(txn, oldestKey(d.CreatedAt, d.Seq))
}

// deleteKey deletes key in txn.
func deleteKey(txn *badger.Txn, key []byte) error {
	if err := txn.Delete(key); err != nil {
		return fmt.Errorf("deleting %q: %w", key, err)
	}
	return nil
}

// NextDue returns the earliest time a queued delivery of an enabled
// webhook is due, or its webhook's hold ends if that is later (leased
// deliveries included: they are due when their lease expires); ok is false
// when there is none. It looks at the queues in the order of their
// in-memory bounds, each from its bound, until no later one can be
// earlier than what it found.
func (s *Store) NextDue() (time.Time, bool, error) {
	visits := s.visits(math.MaxUint64)
	if len(visits) == 0 {
		return time.Time{}, false, nil
	}
	var due uint64
	var ok bool
	err := s.db.View(func(txn *badger.Txn) error {
		for _, v := range visits {
			if ok && v.due >= due {
				return nil
			}
			it := queueIterator(txn, v.webhookID)
			head, found, err := s.nextDue(it, v)
			it.Close()
			if err != nil {
				return err
			}
			if !found {
				continue
			}
			head = max(head, unixNanos(s.Health(v.webhookID).HoldUntil))
			if !ok || head < due {
				due, ok = head, true
			}
		}
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reading next due delivery: %w", err)
	}
	if !ok {
		return time.Time{}, false, nil
	}
	return nanosTime(due), true, nil
}

// GetDelivery returns a delivery, or a wrapped ErrNotFound (also once a
// finished delivery has expired).
func (s *Store) GetDelivery(id string) (Delivery, error) {
	var d Delivery
	err := s.db.View(func(txn *badger.Txn) error {
		return getRecord(txn, deliveryKey(id), "delivery", id, &d)
	})
	if err != nil {
		return Delivery{}, err
	}
	return d, nil
}

// GetEvent returns an event, or a wrapped ErrNotFound (also once it has
// expired).
func (s *Store) GetEvent(id string) (Event, error) {
	var ev Event
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		ev, _, err = getEvent(txn, id)
		return err
	})
	if err != nil {
		return Event{}, err
	}
	return ev, nil
}

// releaseLeases makes every leased delivery due at now. It runs when the
// store opens: Badger's directory lock guarantees that no other process has
// the store, so any lease found then was held by a process that died (or
// stopped mid-attempt) and nobody is delivering it. Without this, such
// deliveries would wait for their lease to run out.
func (s *Store) releaseLeases(now time.Time) error {
	ids, err := s.keysWithPrefix(prefixLease, 0)
	if err != nil {
		return fmt.Errorf("listing leases: %w", err)
	}
	for _, id := range ids {
		var ak []byte
		err := s.update(func(txn *badger.Txn) error {
			ak = nil
			if err := deleteKey(txn, leaseKey(id)); err != nil {
				return err
			}
			var d Delivery
			err := getRecord(txn, deliveryKey(id), "delivery", id, &d)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if d.State != StatePending || !d.NextAttemptAt.After(now) {
				return nil
			}
			if err := deleteKey(txn, webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq)); err != nil {
				return err
			}
			was := displaced(&d)
			d.NextAttemptAt = now
			if ak, err = setPending(txn, &d, was); err != nil {
				return err
			}
			if ak != nil {
				s.bounds.lower(nil, [][]byte{ak})
			}
			return nil
		})
		if ak != nil {
			s.bounds.lower(nil, [][]byte{ak})
		}
		if err != nil {
			return fmt.Errorf("releasing lease of delivery %s: %w", id, err)
		}
	}
	return nil
}
