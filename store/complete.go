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
	var delta int64
	var requeued []queuedKey
	err := s.update(func(txn *badger.Txn) error {
		delta, requeued = 0, requeued[:0]
		// Read first, write after (see eventMarkers).
		deliveries := make(map[string]*Delivery, len(batch))
		markers := eventMarkers{}
		for _, c := range batch {
			if _, ok := deliveries[c.deliveryID]; ok {
				continue
			}
			d := new(Delivery)
			err := getJSON(txn, deliveryKey(c.deliveryID), "delivery "+c.deliveryID, d)
			switch {
			case errors.Is(err, ErrNotFound):
				d = nil
			case err != nil:
				return err
			case markers[d.EventID] == nil:
				markers[d.EventID] = readMarkers(txn, d.EventID)
			}
			deliveries[c.deliveryID] = d
		}
		for i, c := range batch {
			results[i] = s.completeOne(txn, c, deliveries[c.deliveryID], markers, &delta, &requeued)
			// A missing delivery wrote nothing: only its caller hears of
			// it. Any other error leaves the transaction half written.
			if results[i] != nil && !errors.Is(results[i], ErrNotFound) {
				return results[i]
			}
		}
		s.bounds.lower(requeued, nil)
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) && len(batch) > 1 {
		s.completeBatch(batch[:len(batch)/2])
		s.completeBatch(batch[len(batch)/2:])
		return
	}
	if err == nil {
		s.bounds.lower(requeued, nil)
		s.depth.Add(delta)
	}
	for i, c := range batch {
		if err == nil {
			s.leases.drop(c.deliveryID)
		}
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

// completeOne applies one completion to its delivery d (nil: not found) in
// txn, updating *d, adding to *delta the change in the number of queued
// deliveries and to *requeued the queue key it writes.
func (s *Store) completeOne(txn *badger.Txn, c *completion, d *Delivery, markers eventMarkers, delta *int64, requeued *[]queuedKey) error {
	if d == nil {
		return fmt.Errorf("delivery %s: %w", c.deliveryID, ErrNotFound)
	}
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
		return setJSON(txn, deliveryKey(d.ID), "delivery "+d.ID, d, s.recordTTL)
	}
	qk := webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq)
	switch _, err := txn.Get(qk); {
	case err == nil:
		*delta--
		if err := deleteKey(txn, qk); err != nil {
			return err
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return fmt.Errorf("reading queue entry: %w", err)
	}
	if c.out.State != StatePending {
		// Leaving the queue can only make the webhook's bound early,
		// which ClaimDue corrects when it finds nothing.
		d.State = c.out.State
		return s.finish(txn, d, markers)
	}
	d.NextAttemptAt = c.out.NextAttemptAt
	if d.NextAttemptAt.IsZero() {
		d.NextAttemptAt = c.now
	}
	if err := setJSON(txn, deliveryKey(d.ID), "delivery "+d.ID, d, 0); err != nil {
		return err
	}
	qk = webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq)
	if err := txn.Set(qk, []byte(d.ID)); err != nil {
		return fmt.Errorf("writing queue entry: %w", err)
	}
	// Due again, maybe before the webhook's bound.
	*requeued = append(*requeued, queuedKey{webhookID: d.WebhookID, key: qk, due: unixNanos(d.NextAttemptAt)})
	*delta++
	return nil
}
