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

// Each webhook has its own queue of pending deliveries. The schedule, which
// orders the webhooks by the time their first delivery is due, is kept in
// memory (bounds.go) and rebuilt from the queues when the store opens, so
// ClaimDue and NextDue cost nothing per queued delivery: their cost grows
// with the number of webhooks that have something due, and a paused
// webhook with a million pending deliveries costs one comparison.
//
//	wq/<webhookID>/<due nanos><seq>  deliveryID "\n" Delivery record; one per pending delivery (queuevalue.go)
//	hl/<webhookID>                   JSON Health
//	wo/<created nanos><seq>          deliveryID; displaced pending deliveries only, oldest first (ageindex.go)
//
// Earlier versions kept the schedule in Badger under ws/, wsp/ and wn/;
// Open drops those keys.
const (
	prefixWebhookQueue = "wq/"
	prefixHealth       = "hl/"
	prefixOldest       = "wo/"
)

// legacySchedulePrefixes are the schedule keys of earlier versions.
var legacySchedulePrefixes = []string{"ws/", "wsp/", "wn/"}

// stampLen is the length of a due time and sequence number pair in a key.
const stampLen = 16

func webhookQueuePrefix(webhookID string) []byte {
	return []byte(prefixWebhookQueue + webhookID + "/")
}

// webhookQueueKey orders one webhook's pending deliveries by due time, then
// by sequence number.
func webhookQueueKey(webhookID string, due time.Time, seq uint64) []byte {
	k := make([]byte, 0, len(prefixWebhookQueue)+len(webhookID)+1+stampLen)
	k = append(k, prefixWebhookQueue...)
	k = append(k, webhookID...)
	k = append(k, '/')
	k = binary.BigEndian.AppendUint64(k, unixNanos(due))
	return binary.BigEndian.AppendUint64(k, seq)
}

// parseWebhookQueueKey returns the webhook ID and due time (Unix
// nanoseconds) of a webhook queue key.
func parseWebhookQueueKey(k []byte) (string, uint64, error) {
	due, err := queueKeyDue(k)
	if err != nil {
		return "", 0, err
	}
	return string(k[len(prefixWebhookQueue) : len(k)-stampLen-1]), due, nil
}

// queueKeyDue returns the due time (Unix nanoseconds) of a webhook queue
// key. Unlike parseWebhookQueueKey it allocates nothing: a claim's scan
// reads it for every entry it steps past.
func queueKeyDue(k []byte) (uint64, error) {
	n := len(k) - stampLen - 1
	if n <= len(prefixWebhookQueue) || !bytes.HasPrefix(k, []byte(prefixWebhookQueue)) || k[n] != '/' {
		return 0, fmt.Errorf("malformed webhook queue key %q", k)
	}
	return binary.BigEndian.Uint64(k[n+1:]), nil
}

func healthKey(webhookID string) []byte { return []byte(prefixHealth + webhookID) }

// oldestKey is the age index key of a displaced pending delivery: it
// orders them by creation time (ageindex.go).
func oldestKey(created time.Time, seq uint64) []byte {
	k := make([]byte, 0, len(prefixOldest)+stampLen)
	k = append(k, prefixOldest...)
	k = binary.BigEndian.AppendUint64(k, unixNanos(created))
	return binary.BigEndian.AppendUint64(k, seq)
}

// nanosTime converts key nanoseconds back to a time.
func nanosTime(n uint64) time.Time { return time.Unix(0, int64(n)).UTC() }

// queueKeys returns the queue keys among writes, for bounds.lower.
func queueKeys(writes []write) []queuedKey {
	var keys []queuedKey
	for _, w := range writes {
		if !w.queued {
			continue
		}
		id, due, err := parseWebhookQueueKey(w.key)
		if err != nil {
			continue
		}
		keys = append(keys, queuedKey{webhookID: id, key: w.key, due: due})
	}
	return keys
}

// keysWithPrefix returns the rest of every key under prefix, at most limit
// of them (0: all).
func (s *Store) keysWithPrefix(prefix string, limit int) ([]string, error) {
	var out []string
	err := s.db.View(func(txn *badger.Txn) error {
		p := []byte(prefix)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: p})
		defer it.Close()
		for it.Seek(p); it.ValidForPrefix(p); it.Next() {
			out = append(out, string(it.Item().Key()[len(p):]))
			if limit > 0 && len(out) == limit {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s keys: %w", prefix, err)
	}
	return out, nil
}

// visit is a webhook ClaimDue or NextDue looks at, with the earliest its
// first delivery may be due and its queue's bound (read before the scan's
// transaction opens, see bounds).
type visit struct {
	due       uint64
	webhookID string
	from      []byte
	gen       uint64
}

// visits returns the webhooks that are not disabled and may have
// something queued, in the order their first delivery, or the end of their
// hold if later, may be due (visit.due), ready by at most until. It reads
// memory only.
func (s *Store) visits(until uint64) []visit {
	var visits []visit
	idx := s.index.Load()
	s.bounds.each(func(id string, due uint64, from []byte, gen uint64) {
		if w, ok := idx.byID[id]; ok && !w.Enabled {
			return
		}
		if due = max(due, unixNanos(s.Health(id).HoldUntil)); due > until {
			return
		}
		visits = append(visits, visit{due: due, webhookID: id, from: from, gen: gen})
	})
	slices.SortFunc(visits, func(a, b visit) int {
		if c := cmp.Compare(a.due, b.due); c != 0 {
			return c
		}
		return cmp.Compare(a.webhookID, b.webhookID)
	})
	return visits
}

// queueIterator returns an iterator over one webhook's queue. It is not
// shared between webhooks: Badger's iterator looks ahead for live keys
// within its prefix, skipping deleted ones, so an iterator over every
// queue would walk, after a webhook's last entry, through the next queue's
// delivered (deleted) entries, as many as were delivered since the last
// compaction.
func queueIterator(txn *badger.Txn, webhookID string) *badger.Iterator {
	return txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: webhookQueuePrefix(webhookID)})
}

// seekQueue positions it (an iterator over the webhook's queue) at the
// webhook's first live queue entry, starting from v.from, and records what
// it found in the bound. v.from and v.gen must have been read before the
// iterator's transaction opened. It returns whether the queue has an entry.
func (s *Store) seekQueue(it *badger.Iterator, v visit) (bool, error) {
	webhookID, from, gen := v.webhookID, v.from, v.gen
	prefix := webhookQueuePrefix(webhookID)
	if from == nil || !bytes.HasPrefix(from, prefix) {
		from = prefix
	}
	it.Seek(from)
	if !it.ValidForPrefix(prefix) {
		s.bounds.raise(webhookID, gen, nil, emptyDue)
		return false, nil
	}
	head := it.Item().Key()
	_, due, err := parseWebhookQueueKey(head)
	if err != nil {
		return false, err
	}
	s.bounds.raise(webhookID, gen, head, due)
	return true, nil
}

// nextDue returns, through it (an iterator over the webhook's queue), when
// the webhook's queue next has something to claim: the due time of its
// first delivery not leased, or the earliest expiry of the leases before
// it (an expired one is in the past, so due at once). It walks the leased deliveries at the head of the
// queue, as many as are in flight.
func (s *Store) nextDue(it *badger.Iterator, v visit) (uint64, bool, error) {
	webhookID := v.webhookID
	ok, err := s.seekQueue(it, v)
	if err != nil || !ok {
		return 0, false, err
	}
	prefix := webhookQueuePrefix(webhookID)
	var next uint64
	found := false
	for ; it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		due, err := queueKeyDue(item.Key())
		if err != nil {
			return 0, false, err
		}
		if found && due >= next {
			break
		}
		var until time.Time
		var leased bool
		err = item.Value(func(v []byte) error {
			until, leased = s.leases.heldID(queueEntryIDBytes(v), time.Time{})
			return nil
		})
		if err != nil {
			return 0, false, fmt.Errorf("reading queue entry: %w", err)
		}
		if !leased {
			if found {
				due = min(due, next)
			}
			return due, true, nil
		}
		if u := unixNanos(until); !found || u < next {
			next, found = u, true
		}
	}
	return next, found, nil
}

// scanHook, if set (by tests), runs in dueCandidates once its transaction
// is open, before it looks at the queues.
var scanHook func()

// dueCandidates scans the due webhooks' queues for up to limit accepted
// deliveries due at or before now.
func (s *Store) dueCandidates(now time.Time, limit int, accept func(string) bool) ([]candidate, error) {
	nowNanos := unixNanos(now)
	visits := s.visits(nowNanos)
	if len(visits) == 0 {
		return nil, nil
	}
	var cands []candidate
	err := s.db.View(func(txn *badger.Txn) error {
		if scanHook != nil {
			scanHook()
		}
		for _, v := range visits {
			found, err := s.scanQueue(txn, v, now, limit-len(cands), accept)
			if err != nil {
				return err
			}
			cands = append(cands, found...)
			if len(cands) == limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanning queue: %w", err)
	}
	// Across webhooks, in queue order too: first attempts start in the
	// order the events were derived.
	slices.SortStableFunc(cands, func(a, b candidate) int {
		if c := cmp.Compare(a.due, b.due); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	return cands, nil
}

// scanQueue returns up to limit candidates from the visited webhook's
// queue, due at or before now, not leased, and approved by accept (nil
// accepts all), stopping at the first one accept turns down, each with a
// copy of its queue entry's value.
func (s *Store) scanQueue(txn *badger.Txn, v visit, now time.Time, limit int, accept func(string) bool) ([]candidate, error) {
	nowNanos := unixNanos(now)
	prefix := webhookQueuePrefix(v.webhookID)
	it := queueIterator(txn, v.webhookID)
	defer it.Close()
	ok, err := s.seekQueue(it, v)
	if err != nil || !ok {
		return nil, err
	}
	var cands []candidate
	for ; it.ValidForPrefix(prefix) && len(cands) < limit; it.Next() {
		item := it.Item()
		due, err := queueKeyDue(item.Key())
		if err != nil {
			return nil, err
		}
		if due > nowNanos {
			break
		}
		var leased bool
		if err := item.Value(func(val []byte) error {
			_, leased = s.leases.heldID(queueEntryIDBytes(val), now)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("reading queue entry: %w", err)
		}
		if leased {
			continue // in flight; the ones after it may go
		}
		if accept != nil && !accept(v.webhookID) {
			break
		}
		c := candidate{key: item.KeyCopy(nil), webhookID: v.webhookID, due: due}
		c.seq = binary.BigEndian.Uint64(c.key[len(c.key)-8:])
		// ClaimDue takes the delivery from this copy unless it may have
		// changed since (see leases).
		if c.val, err = item.ValueCopy(nil); err != nil {
			return nil, fmt.Errorf("reading queue entry: %w", err)
		}
		c.deliveryID = queueEntryID(c.val)
		cands = append(cands, c)
	}
	return cands, nil
}

// loadQueues finds, when the store opens, every webhook with something
// queued and puts its first entry in memory. It costs one seek per such
// webhook, whatever the length of the queues. It also drops the schedule
// keys of earlier versions.
func (s *Store) loadQueues() error {
	for _, p := range legacySchedulePrefixes {
		if err := s.db.DropPrefix([]byte(p)); err != nil {
			return fmt.Errorf("dropping old schedule keys %s: %w", p, err)
		}
	}
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixWebhookQueue)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); {
			k := it.Item().Key()
			id, due, err := parseWebhookQueueKey(k)
			if err != nil {
				return err
			}
			s.bounds.lower([]queuedKey{{webhookID: id, key: k, due: due}}, nil)
			// '0' is the byte after '/': skip the rest of this queue.
			it.Seek([]byte(prefixWebhookQueue + id + "0"))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing webhook queues: %w", err)
	}
	return nil
}

// countQueue counts the queued deliveries, by webhook (Open seeds
// QueueDepth and the leases' counts with it).
func (s *Store) countQueue() (queueDelta, error) {
	n := queueDelta{}
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixWebhookQueue)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			id, _, err := parseWebhookQueueKey(it.Item().Key())
			if err != nil {
				return err
			}
			n.add(id, 1)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("counting queue: %w", err)
	}
	return n, nil
}

// migrateQueue moves the entries of the single queue used by earlier
// versions ("q/<due><seq>" holding "<deliveryID>/<webhookID>") into the
// per-webhook queues, and indexes their displaced deliveries by age.
func (s *Store) migrateQueue() error {
	for {
		type old struct {
			key               []byte
			delivery, webhook string
		}
		var batch []old
		err := s.db.View(func(txn *badger.Txn) error {
			prefix := []byte(prefixQueue)
			it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: prefix})
			defer it.Close()
			for it.Seek(prefix); it.ValidForPrefix(prefix) && len(batch) < 500; it.Next() {
				o := old{key: it.Item().KeyCopy(nil)}
				err := it.Item().Value(func(v []byte) error {
					var err error
					o.delivery, o.webhook, err = parseQueueValue(v)
					return err
				})
				if err != nil {
					o.delivery = ""
				}
				batch = append(batch, o)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reading old queue: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		var aged [][]byte
		err = s.update(func(txn *badger.Txn) error {
			aged = aged[:0]
			for _, o := range batch {
				if err := deleteKey(txn, o.key); err != nil {
					return err
				}
				if o.delivery == "" {
					continue
				}
				var d Delivery
				err := getRecord(txn, deliveryKey(o.delivery), "delivery", o.delivery, &d)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if d.State != StatePending {
					continue
				}
				// Whether an age entry exists is not known: indexed.
				ak, err := setPending(txn, &d, true)
				if err != nil {
					return err
				}
				if ak != nil {
					aged = append(aged, ak)
					s.bounds.lower(nil, [][]byte{ak})
				}
			}
			return nil
		})
		s.bounds.lower(nil, aged)
		if err != nil {
			return fmt.Errorf("migrating old queue: %w", err)
		}
	}
}

// QueueDepth returns the number of pending deliveries, leased ones and
// those of paused or disabled webhooks included. It is kept in memory and
// costs nothing.
func (s *Store) QueueDepth() (int, error) {
	return int(s.depth.Load()), nil
}
