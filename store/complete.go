package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// maxCompleteBatch bounds how many completions share one transaction.
const maxCompleteBatch = 128

// completion is one Complete call waiting for its batch to commit.
type completion struct {
	deliveryID string
	attempt    *Attempt
	attemptSeq uint64
	out        Outcome
	now        time.Time
	done       chan error
}

// Complete applies the result of an attempt (nil: none was made, for
// example because the webhook is gone, or the attempt was cut short) to a
// delivery, and ends its lease. With out.State pending the delivery is due
// again at out.NextAttemptAt (now if zero); otherwise it leaves the queue
// and it, its event once no other delivery of it is pending, and the
// attempt records expire after the record TTL. A delivery that already
// finished keeps its state; only the attempt is recorded. It returns a
// wrapped ErrNotFound for an unknown delivery.
//
// Complete returns once the change is committed. Calls made while another
// batch commits are committed together, in one transaction (group commit),
// so that many deliveries finishing at once cost one write.
func (s *Store) Complete(deliveryID string, attempt *Attempt, out Outcome, now time.Time) error {
	switch out.State {
	case StatePending, StateSucceeded, StateFailed:
	default:
		return fmt.Errorf("completing delivery %s: invalid state %q", deliveryID, out.State)
	}
	c := &completion{deliveryID: deliveryID, attempt: attempt, out: out, now: now, done: make(chan error, 1)}
	if attempt != nil {
		var err error
		if c.attemptSeq, err = s.attemptSeq.Next(); err != nil {
			return fmt.Errorf("completing delivery %s: next attempt sequence: %w", deliveryID, err)
		}
	}
	select {
	case s.completeCh <- c:
	case <-s.stopCh:
		return fmt.Errorf("completing delivery %s: %w", deliveryID, badger.ErrDBClosed)
	}
	return <-c.done
}

// completeHook, if set (by tests), runs in completeBatch once its
// transaction has committed (or failed), before its leases are dropped.
var completeHook func()

// completer commits the completions sent by Complete, each batch of those
// waiting in one transaction, until the store closes.
func (s *Store) completer() {
	defer close(s.completerDone)
	batch := make([]*completion, 0, maxCompleteBatch)
	for {
		select {
		case c := <-s.completeCh:
			batch = append(batch[:0], c)
		case <-s.stopCh:
			return
		}
	more:
		for len(batch) < maxCompleteBatch {
			select {
			case c := <-s.completeCh:
				batch = append(batch, c)
			default:
				break more
			}
		}
		s.completeBatch(batch)
	}
}

// completeBatch commits a batch of completions in one transaction and
// tells each caller its result. A batch too big for one transaction is
// split in halves.
func (s *Store) completeBatch(batch []*completion) {
	results := make([]error, len(batch))
	var delta queueDelta
	var requeued []queuedKey
	var aged [][]byte
	ids := make([]string, len(batch))
	for i, c := range batch {
		ids[i] = c.deliveryID
	}
	// Marked from before the commit until the leases are dropped after it,
	// so that a claim whose transaction sees the commit does not take a
	// delivery from what its scan read before (see leases).
	s.leases.writing(ids)
	s.releaseMu.Lock()
	err := s.update(func(txn *badger.Txn) error {
		delta, requeued, aged = queueDelta{}, requeued[:0], aged[:0]
		// Read first, write after: every event a completion may finish a
		// delivery of is read once, before anything is written; the batch
		// lowers its count in memory and writes it once, at the end. A
		// delivery whose lease kept what its claim read is not read
		// again, nor its event when the lease's copy is exact and counts
		// that delivery alone (see leases).
		deliveries := make(map[string]*known, len(batch))
		events := batchEvents{}
		for _, c := range batch {
			k, seen := deliveries[c.deliveryID]
			if !seen {
				var err error
				if k, err = s.loadKnown(txn, c.deliveryID); err != nil {
					return err
				}
				deliveries[c.deliveryID] = k
			}
			// Only a completion that finishes a pending delivery changes
			// its event.
			if k == nil || c.out.State == StatePending || k.d.State != StatePending {
				continue
			}
			if err := events.load(txn, k.d.EventID, k.event); err != nil {
				return err
			}
		}
		for i, c := range batch {
			results[i] = s.completeOne(txn, c, deliveries[c.deliveryID], events, delta, &requeued, &aged)
			// A missing delivery wrote nothing: only its caller hears of
			// it. Any other error leaves the transaction half written.
			if results[i] != nil && !errors.Is(results[i], ErrNotFound) {
				return results[i]
			}
		}
		if err := s.writeEvents(txn, events); err != nil {
			return err
		}
		s.bounds.lower(requeued, aged)
		return nil
	})
	s.releaseMu.Unlock()
	if errors.Is(err, badger.ErrTxnTooBig) && len(batch) > 1 {
		s.leases.written(ids, false, nil)
		s.completeBatch(batch[:len(batch)/2])
		s.completeBatch(batch[len(batch)/2:])
		return
	}
	if err == nil {
		s.bounds.lower(requeued, aged)
		s.depth.Add(delta.total())
	}
	if completeHook != nil {
		completeHook()
	}
	// The leases end once the batch has committed, before any caller
	// hears of it; a batch that failed wrote nothing, and they hold.
	s.leases.written(ids, err == nil, delta)
	for i, c := range batch {
		e := err
		if e == nil {
			e = results[i]
		}
		if e != nil {
			e = fmt.Errorf("completing delivery %s: %w", c.deliveryID, e)
		}
		c.done <- e
	}
}

// known is a delivery as completeBatch found it.
type known struct {
	d *Delivery
	// event is the value of d's event as d's lease kept it; nil if d did
	// not come from a lease, or the lease's copy may be stale.
	event []byte
	// queued tells that d's queue entry is known to exist: d came from its
	// lease, or an earlier completion in the batch wrote the entry.
	queued bool
}

// loadKnown returns the delivery with that ID as its lease kept it or, if
// it has none, as read in txn; nil if it does not exist.
func (s *Store) loadKnown(txn *badger.Txn, deliveryID string) (*known, error) {
	if d, ev, ok := s.leases.state(deliveryID); ok {
		return &known{d: &d, event: ev, queued: true}, nil
	}
	k := &known{d: new(Delivery)}
	err := getRecord(txn, deliveryKey(deliveryID), "delivery", deliveryID, k.d)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

// batchEvent is an event whose pending count a completion batch lowers.
type batchEvent struct {
	// val is the event's value as stored before the batch; nil if the
	// event is missing, which leaves nothing to release.
	val []byte
	// pending is the count after the batch's completions so far.
	pending uint64
	// changed tells that the batch lowered the count.
	changed bool
}

// batchEvents holds the events of the deliveries a completion batch may
// finish, by ID. Each is read at most once, before the batch writes
// anything, its count is lowered in memory by every delivery the batch
// finishes, and it is written once, by writeEvents.
type batchEvents map[string]*batchEvent

// load reads, in txn, the event with that ID unless it has it already.
// kept, if not nil, is the event's value as a lease kept it (see leases):
// when it counts one pending delivery it is used instead of a read.
func (be batchEvents) load(txn *badger.Txn, eventID string, kept []byte) error {
	if be[eventID] != nil {
		return nil
	}
	if kept != nil {
		if n, err := eventPending(kept); err == nil && n == 1 {
			be[eventID] = &batchEvent{val: kept, pending: 1}
			return nil
		}
	}
	val, err := getRaw(txn, eventKey(eventID), "event "+eventID)
	if errors.Is(err, ErrNotFound) {
		be[eventID] = &batchEvent{}
		return nil
	}
	if err != nil {
		return err
	}
	n, err := eventPending(val)
	if err != nil {
		return fmt.Errorf("decoding event %s: %w", eventID, err)
	}
	be[eventID] = &batchEvent{val: val, pending: n}
	return nil
}

// release takes a finished delivery off its event's count. The count never
// goes below 0: a delivery finishing when none is counted (an event of an
// earlier version without markers, say) leaves it at 0.
func (be batchEvents) release(eventID string) {
	ev := be[eventID]
	if ev == nil || ev.val == nil {
		return
	}
	if ev.pending > 0 {
		ev.pending--
	}
	ev.changed = true
}

// writeEvents writes, in txn, every event whose count the batch lowered:
// with the record TTL once no delivery of it is pending, without any
// otherwise.
func (s *Store) writeEvents(txn *badger.Txn, be batchEvents) error {
	for id, ev := range be {
		if !ev.changed {
			continue
		}
		val, err := withPending(ev.val, ev.pending)
		if err != nil {
			return fmt.Errorf("decoding event %s: %w", id, err)
		}
		var ttl time.Duration
		if ev.pending == 0 {
			ttl = s.recordTTL
		}
		if err := setEventValue(txn, id, val, ttl); err != nil {
			return err
		}
	}
	return nil
}

// completeOne applies one completion to its delivery k (nil: not found) in
// txn, updating k and, if it finishes the delivery, its event's count in
// events, adding to delta the change in the number of queued deliveries,
// to *requeued the queue key it writes and to *aged the age index key it
// writes (see OldestPending).
func (s *Store) completeOne(txn *badger.Txn, c *completion, k *known, events batchEvents, delta queueDelta, requeued *[]queuedKey, aged *[][]byte) error {
	if k == nil {
		return fmt.Errorf("delivery %s: %w", c.deliveryID, ErrNotFound)
	}
	d := k.d
	if c.attempt != nil {
		a := *c.attempt
		d.Attempts++
		if err := s.recordAttempt(txn, d, &a, c.attemptSeq, c.now); err != nil {
			return err
		}
		d.LastStatus = a.Status
		d.LastError = a.Error
	}
	d.UpdatedAt = c.now

	if d.State != StatePending {
		return setRecord(txn, deliveryKey(d.ID), "delivery", d.ID, d, s.recordTTL)
	}
	qk := webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq)
	queued := k.queued
	if !queued {
		switch _, err := txn.Get(qk); {
		case err == nil:
			queued = true
		case !errors.Is(err, badger.ErrKeyNotFound):
			return fmt.Errorf("reading queue entry: %w", err)
		}
	}
	if queued {
		delta.add(d.WebhookID, -1)
		if err := deleteKey(txn, qk); err != nil {
			return err
		}
	}
	k.queued = false
	if c.out.State != StatePending {
		// Leaving the queue can only make the webhook's bound early,
		// which ClaimDue corrects when it finds nothing.
		d.State = c.out.State
		if err := s.finish(txn, d); err != nil {
			return err
		}
		events.release(d.EventID)
		return nil
	}
	// d is as it was while pending (or as an earlier completion of the
	// batch left it): whether it has an age entry follows from it.
	was := displaced(d)
	d.NextAttemptAt = c.out.NextAttemptAt
	if d.NextAttemptAt.IsZero() {
		d.NextAttemptAt = c.now
	}
	ak, err := setPending(txn, d, was)
	if err != nil {
		return err
	}
	if ak != nil {
		*aged = append(*aged, ak)
	}
	qk = webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq)
	k.queued = true
	// Due again, maybe before the webhook's bound.
	*requeued = append(*requeued, queuedKey{webhookID: d.WebhookID, key: qk, due: unixNanos(d.NextAttemptAt)})
	delta.add(d.WebhookID, 1)
	return nil
}
