package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The age index, wo/<created nanos><seq> holding the delivery ID, exists
// for OldestPending alone. A pending delivery is displaced when the due
// time of its queue entry is not its creation time: it was retried, put
// back, or released at open (or migrated from an earlier version's queue).
// A fresh delivery is due when it is created, so it is not displaced. The
// index holds an entry for exactly the displaced pending deliveries, so
// that a delivery sent on its first attempt, the common case, costs no
// write to it. setPending and finish keep it so; migrateAgeIndex drops the
// entries that earlier versions, which indexed every pending delivery,
// left behind.

// displaced reports whether the pending delivery d, due at d.NextAttemptAt,
// is displaced: due at another time than it was created (see above).
func displaced(d *Delivery) bool {
	return unixNanos(d.NextAttemptAt) != unixNanos(d.CreatedAt)
}

// early reports whether d is due before it was created: a delivery put
// back at "now" after the clock stepped back (see sink's firstInLine), or
// given such a due time by Complete. It is displaced.
func early(d *Delivery) bool {
	return unixNanos(d.NextAttemptAt) < unixNanos(d.CreatedAt)
}

// OldestPending returns when the oldest pending delivery was created; ok is
// false when none is pending.
//
// It is min(A, B), where B is the oldest creation time in the age index
// and A the earliest due time of a delivery not due before it was created
// (not early), over the queues of every webhook with something queued:
// enabled, disabled, held or deleted. It is exact. Every pending delivery
// is in its webhook's queue. One that is not displaced was created when it
// is due, so no earlier than A; one that is displaced is in the index, so
// was created no earlier than B: nothing pending is older than min(A, B).
// And min(A, B) is the creation time of a pending delivery: B is one; A is
// the due time of a delivery h that is not early. If h is not displaced,
// A is its creation time; if it is, A is after its creation time, which is
// no earlier than B, so min(A, B) is B. Early deliveries are left out of
// A: their due time is before their creation time, and may be before
// every pending delivery's. Being displaced, they are counted in B.
//
// It costs one seek in the age index, from where the previous call found
// its first entry, and one seek per webhook with something queued, in the
// order of their in-memory bounds until no later one can be earlier than
// what it found, reading the record at the head of each queue it looks
// at (past any early ones): its cost grows with the number of webhooks
// with a queue, not with the number of deliveries. A metrics scrape pays
// it.
func (s *Store) OldestPending() (time.Time, bool, error) {
	// Bounds first, then the transaction (see bounds).
	from, gen := s.bounds.oldestBound()
	var heads []visit
	s.bounds.each(func(id string, due uint64, key []byte, qgen uint64) {
		heads = append(heads, visit{due: due, webhookID: id, from: key, gen: qgen})
	})
	slices.SortFunc(heads, func(a, b visit) int { return cmp.Compare(a.due, b.due) })
	var oldest uint64
	var ok bool
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if oldest, ok, err = s.oldestIndexed(txn, from, gen); err != nil {
			return err
		}
		for _, v := range heads {
			limit := uint64(emptyDue)
			if ok {
				limit = oldest
			}
			if v.due >= limit {
				return nil // and so are the webhooks after it
			}
			due, found, err := s.firstNotEarly(txn, v, limit)
			if err != nil {
				return err
			}
			if found {
				oldest, ok = due, true
			}
		}
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reading oldest pending delivery: %w", err)
	}
	if !ok {
		return time.Time{}, false, nil
	}
	return nanosTime(oldest), true, nil
}

// oldestIndexed returns, in txn, the creation time of the first entry of
// the age index, seeking from from, and records it in the age bound. from
// and gen must have been read (oldestBound) before txn opened.
func (s *Store) oldestIndexed(txn *badger.Txn, from []byte, gen uint64) (uint64, bool, error) {
	prefix := []byte(prefixOldest)
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
	defer it.Close()
	if from == nil {
		from = prefix
	}
	it.Seek(from)
	if !it.ValidForPrefix(prefix) {
		s.bounds.raiseOldest(gen, nil)
		return 0, false, nil
	}
	k := it.Item().Key()
	if len(k) != len(prefixOldest)+stampLen {
		return 0, false, fmt.Errorf("malformed age index key %q", k)
	}
	s.bounds.raiseOldest(gen, k)
	return binary.BigEndian.Uint64(k[len(prefixOldest):]), true, nil
}

// firstNotEarly returns, in txn, the due time of the first delivery in the
// visited webhook's queue that is not early, if it is before limit; found
// is false otherwise. It skips, too, entries that do not match a pending
// delivery (ClaimDue drops those when it meets them).
func (s *Store) firstNotEarly(txn *badger.Txn, v visit, limit uint64) (uint64, bool, error) {
	prefix := webhookQueuePrefix(v.webhookID)
	it := queueIterator(txn, v.webhookID)
	defer it.Close()
	ok, err := s.seekQueue(it, v)
	if err != nil || !ok {
		return 0, false, err
	}
	for ; it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		_, due, err := parseWebhookQueueKey(item.Key())
		if err != nil {
			return 0, false, err
		}
		if due >= limit {
			return 0, false, nil
		}
		d, pending, err := entryDelivery(txn, item)
		if err != nil {
			return 0, false, err
		}
		if pending && !early(&d) {
			return due, true, nil
		}
	}
	return 0, false, nil
}

// entryDelivery returns, in txn, the delivery of a queue entry: the record
// it carries or, for an entry of an earlier version, the one under dl/.
// pending is false when the entry is not that of a pending delivery.
func entryDelivery(txn *badger.Txn, item *badger.Item) (d Delivery, pending bool, err error) {
	var id string
	var carried bool
	err = item.Value(func(v []byte) error {
		id = queueEntryID(v)
		var err error
		d, carried, err = queueEntryDelivery(v)
		return err
	})
	if err != nil {
		return Delivery{}, false, fmt.Errorf("reading queue entry: %w", err)
	}
	if !carried {
		err := getRecord(txn, deliveryKey(id), "delivery", id, &d)
		if errors.Is(err, ErrNotFound) {
			return Delivery{}, false, nil
		}
		if err != nil {
			return Delivery{}, false, err
		}
	}
	if d.ID != id || d.State != StatePending || !bytes.Equal(webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq), item.Key()) {
		return Delivery{}, false, nil
	}
	return d, true, nil
}

// maxAgeBatch bounds how many age index entries one transaction of
// migrateAgeIndex looks at.
const maxAgeBatch = 1000

// ageEntry is an entry of the age index.
type ageEntry struct {
	key        []byte
	deliveryID string
}

// migrateAgeIndex deletes every age index entry that is not that of a
// displaced pending delivery: whose delivery is missing, finished or not
// displaced, or whose key is malformed. Earlier versions indexed every
// pending delivery; the entries of the displaced ones are kept. It commits
// in bounded transactions and can be cut short: it only deletes what is
// not to be there. Then it moves the age bound to the first entry left, so
// that OldestPending does not walk the deleted ones.
//
// It runs at every open, not once: it then costs a walk of the index and
// one point read per displaced pending delivery, which are the deliveries
// being retried. Running it every time repairs, at the next open, a store
// that an earlier version wrote to after this one (a rollback, then an
// upgrade again): that version indexes every delivery it enqueues, and
// this one would leave the entry of such a delivery behind when it
// finishes on its first attempt, so OldestPending would report a finished
// delivery until the store was next migrated. A version key would skip
// that repair.
func (s *Store) migrateAgeIndex() error {
	from := []byte(prefixOldest)
	var first []byte
	for {
		entries, err := s.ageEntries(from, maxAgeBatch)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			break
		}
		kept, err := s.pruneAgeEntries(entries)
		if err != nil {
			return err
		}
		if first == nil {
			first = kept
		}
		// Seek past this batch rather than walk its deleted entries again.
		last := entries[len(entries)-1].key
		from = append(last[:len(last):len(last)], 0)
	}
	if first == nil {
		first = oldestEnd
	}
	s.bounds.resetOldest(first)
	return nil
}

// ageEntries returns up to limit age index entries, from the first at or
// after from.
func (s *Store) ageEntries(from []byte, limit int) ([]ageEntry, error) {
	var entries []ageEntry
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixOldest)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
		defer it.Close()
		for it.Seek(from); it.ValidForPrefix(prefix) && len(entries) < limit; it.Next() {
			id, err := it.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("reading age index entry: %w", err)
			}
			entries = append(entries, ageEntry{key: it.Item().KeyCopy(nil), deliveryID: string(id)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing age index: %w", err)
	}
	return entries, nil
}

// pruneAgeEntries deletes those of entries that keepAgeEntry turns down, in
// one transaction or, if they do not fit, in several, and returns the
// first entry kept (nil: none).
func (s *Store) pruneAgeEntries(entries []ageEntry) ([]byte, error) {
	var first []byte
	err := s.update(func(txn *badger.Txn) error {
		first = nil
		for _, e := range entries {
			keep, err := keepAgeEntry(txn, e)
			if err != nil {
				return err
			}
			if keep {
				if first == nil {
					first = e.key
				}
				continue
			}
			if err := deleteKey(txn, e.key); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) && len(entries) > 1 {
		first, err := s.pruneAgeEntries(entries[:len(entries)/2])
		if err != nil {
			return nil, err
		}
		next, err := s.pruneAgeEntries(entries[len(entries)/2:])
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = next
		}
		return first, nil
	}
	if err != nil {
		return nil, fmt.Errorf("migrating age index: %w", err)
	}
	return first, nil
}

// keepAgeEntry reports, reading in txn, whether e is the age index entry of
// a displaced pending delivery.
func keepAgeEntry(txn *badger.Txn, e ageEntry) (bool, error) {
	if len(e.key) != len(prefixOldest)+stampLen || e.deliveryID == "" {
		return false, nil
	}
	var d Delivery
	err := getRecord(txn, deliveryKey(e.deliveryID), "delivery", e.deliveryID, &d)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return d.State == StatePending && displaced(&d), nil
}
