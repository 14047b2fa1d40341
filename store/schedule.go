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

// Each webhook has its own queue of pending deliveries, and a schedule
// orders the webhooks by the time their first delivery is due (or their
// hold ends). ClaimDue walks the schedule, so its cost grows with the
// number of webhooks that have something due, never with the length of one
// webhook's backlog: a paused webhook with a million pending deliveries
// costs nothing until its hold ends, and one that is busy costs one look.
//
//	wq/<webhookID>/<due nanos><seq>  deliveryID; one per pending delivery
//	ws/<due nanos><webhookID>        empty; at most one per webhook
//	wsp/<webhookID>                  <due nanos> of the webhook's ws entry
//	wn/<webhookID>                   empty; the webhook's queue or hold changed
//	hl/<webhookID>                   JSON Health
//	wo/<created nanos><seq>          deliveryID; pending deliveries, oldest first
//
// Only ClaimDue (and Open) maintain the schedule. Everything else that
// changes a webhook's queue or hold writes its wn marker without reading
// it, so that Enqueue, on the request path, never conflicts with the
// dispatchers; ClaimDue turns markers into schedule entries, and treats a
// marked webhook as due until it has.
const (
	prefixWebhookQueue = "wq/"
	prefixSchedule     = "ws/"
	prefixSchedulePtr  = "wsp/"
	prefixDirty        = "wn/"
	prefixHealth       = "hl/"
	prefixOldest       = "wo/"
)

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
	n := len(k) - stampLen - 1
	if n <= len(prefixWebhookQueue) || !bytes.HasPrefix(k, []byte(prefixWebhookQueue)) || k[n] != '/' {
		return "", 0, fmt.Errorf("malformed webhook queue key %q", k)
	}
	return string(k[len(prefixWebhookQueue):n]), binary.BigEndian.Uint64(k[n+1:]), nil
}

func scheduleKey(due uint64, webhookID string) []byte {
	k := make([]byte, 0, len(prefixSchedule)+8+len(webhookID))
	k = append(k, prefixSchedule...)
	k = binary.BigEndian.AppendUint64(k, due)
	return append(k, webhookID...)
}

func parseScheduleKey(k []byte) (uint64, string, error) {
	if len(k) <= len(prefixSchedule)+8 || !bytes.HasPrefix(k, []byte(prefixSchedule)) {
		return 0, "", fmt.Errorf("malformed schedule key %q", k)
	}
	return binary.BigEndian.Uint64(k[len(prefixSchedule):]), string(k[len(prefixSchedule)+8:]), nil
}

func schedulePtrKey(webhookID string) []byte { return []byte(prefixSchedulePtr + webhookID) }

func dirtyKey(webhookID string) []byte { return []byte(prefixDirty + webhookID) }

func healthKey(webhookID string) []byte { return []byte(prefixHealth + webhookID) }

// oldestKey orders pending deliveries by creation time.
func oldestKey(created time.Time, seq uint64) []byte {
	k := make([]byte, 0, len(prefixOldest)+stampLen)
	k = append(k, prefixOldest...)
	k = binary.BigEndian.AppendUint64(k, unixNanos(created))
	return binary.BigEndian.AppendUint64(k, seq)
}

// nanosTime converts key nanoseconds back to a time.
func nanosTime(n uint64) time.Time { return time.Unix(0, int64(n)).UTC() }

// markDirty writes the webhook's wn marker in txn.
func markDirty(txn *badger.Txn, webhookID string) error {
	if err := txn.Set(dirtyKey(webhookID), nil); err != nil {
		return fmt.Errorf("marking webhook %s for rescheduling: %w", webhookID, err)
	}
	return nil
}

// reschedule puts the webhook's schedule entry at the due time of its first
// queued delivery, or at the end of its hold if that is later. A webhook
// with nothing queued, or disabled, gets no entry: its deliveries stay
// queued until it is enabled again. A deleted webhook is scheduled as usual
// so that its deliveries can be finished.
func (s *Store) reschedule(txn *badger.Txn, webhookID string) error {
	ptr := schedulePtrKey(webhookID)
	item, err := txn.Get(ptr)
	switch {
	case err == nil:
		var old []byte
		if old, err = item.ValueCopy(nil); err != nil {
			return fmt.Errorf("reading schedule of webhook %s: %w", webhookID, err)
		}
		if len(old) == 8 {
			if err := deleteKey(txn, scheduleKey(binary.BigEndian.Uint64(old), webhookID)); err != nil {
				return err
			}
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return fmt.Errorf("reading schedule of webhook %s: %w", webhookID, err)
	}

	due, ok, err := s.scheduledDue(txn, webhookID)
	if err != nil {
		return err
	}
	if !ok {
		return deleteKey(txn, ptr)
	}
	if err := txn.Set(scheduleKey(due, webhookID), nil); err != nil {
		return fmt.Errorf("writing schedule of webhook %s: %w", webhookID, err)
	}
	if err := txn.Set(ptr, binary.BigEndian.AppendUint64(nil, due)); err != nil {
		return fmt.Errorf("writing schedule of webhook %s: %w", webhookID, err)
	}
	return nil
}

// scheduledDue returns when the webhook should next be looked at: false
// when it is disabled or has nothing queued. The queue is read in txn;
// whether the webhook is enabled, and its hold, come from memory, which
// their writers update before they write the webhook's wn marker (again),
// so a marker is never consumed with an older state.
func (s *Store) scheduledDue(txn *badger.Txn, webhookID string) (uint64, bool, error) {
	if w, ok := s.index.Load().byID[webhookID]; ok && !w.Enabled {
		return 0, false, nil
	}
	prefix := webhookQueuePrefix(webhookID)
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
	defer it.Close()
	it.Seek(prefix)
	if !it.ValidForPrefix(prefix) {
		return 0, false, nil
	}
	_, due, err := parseWebhookQueueKey(it.Item().Key())
	if err != nil {
		return 0, false, err
	}
	return max(due, unixNanos(s.Health(webhookID).HoldUntil)), true, nil
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

// normalize turns the wn markers into schedule entries. A marker rewritten
// meanwhile (a concurrent Enqueue) makes the transaction conflict; the
// webhooks are then done one at a time, and a marker that still conflicts
// stays for the next call (ClaimDue treats its webhook as due meanwhile).
// The marker of an enabled webhook, not held, whose entry is due at now
// already is left for later: rescheduling could only find it due, and a
// busy webhook receiving events would otherwise cost a write every call.
func (s *Store) normalize(now time.Time) error {
	ids, err := s.markersToNormalize(unixNanos(now))
	if err != nil || len(ids) == 0 {
		return err
	}
	one := func(txn *badger.Txn, id string) error {
		if _, err := txn.Get(dirtyKey(id)); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			}
			return fmt.Errorf("reading marker of webhook %s: %w", id, err)
		}
		if err := deleteKey(txn, dirtyKey(id)); err != nil {
			return err
		}
		return s.reschedule(txn, id)
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		for _, id := range ids {
			if err := one(txn, id); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, badger.ErrConflict) && !errors.Is(err, badger.ErrTxnTooBig) {
		if err != nil {
			return fmt.Errorf("rescheduling webhooks: %w", err)
		}
		return nil
	}
	for _, id := range ids {
		err := s.update(func(txn *badger.Txn) error { return one(txn, id) })
		if err != nil && !errors.Is(err, badger.ErrConflict) {
			return fmt.Errorf("rescheduling webhook %s: %w", id, err)
		}
	}
	return nil
}

// markersToNormalize returns the webhooks whose wn marker normalize must
// turn into a schedule entry.
func (s *Store) markersToNormalize(now uint64) ([]string, error) {
	var ids []string
	idx := s.index.Load()
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixDirty)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			id := string(it.Item().Key()[len(prefix):])
			due, err := scheduledAt(txn, id)
			if err != nil {
				return err
			}
			w, known := idx.byID[id]
			if due != 0 && due <= now && known && w.Enabled && unixNanos(s.Health(id).HoldUntil) <= now {
				continue
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing rescheduling markers: %w", err)
	}
	return ids, nil
}

// scheduledAt returns the due time of the webhook's schedule entry, 0 when
// it has none.
func scheduledAt(txn *badger.Txn, webhookID string) (uint64, error) {
	item, err := txn.Get(schedulePtrKey(webhookID))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading schedule of webhook %s: %w", webhookID, err)
	}
	var due uint64
	err = item.Value(func(v []byte) error {
		if len(v) == 8 {
			due = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reading schedule of webhook %s: %w", webhookID, err)
	}
	return due, nil
}

// visit is a webhook ClaimDue looks at, with the time it is due.
type visit struct {
	due       uint64
	webhookID string
	scheduled bool // from a schedule entry (not only a marker)
}

// dueVisits returns, in txn, the webhooks due at now: those whose schedule
// entry is due and those still marked, in due order.
func (s *Store) dueVisits(txn *badger.Txn, now uint64) ([]visit, error) {
	var visits []visit
	seen := map[string]bool{}
	prefix := []byte(prefixSchedule)
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		due, id, err := parseScheduleKey(it.Item().Key())
		if err != nil {
			it.Close()
			return nil, err
		}
		if due > now {
			break
		}
		if !seen[id] {
			seen[id] = true
			visits = append(visits, visit{due: due, webhookID: id, scheduled: true})
		}
	}
	it.Close()
	// An entry may predate a change not yet rescheduled: what memory
	// knows to be disabled or held is not looked at.
	idx := s.index.Load()
	visits = slices.DeleteFunc(visits, func(v visit) bool {
		if w, ok := idx.byID[v.webhookID]; ok && !w.Enabled {
			return true
		}
		return unixNanos(s.Health(v.webhookID).HoldUntil) > now
	})

	marked, err := s.markedHeads(txn, seen)
	if err != nil {
		return nil, err
	}
	for _, v := range marked {
		if v.due <= now {
			visits = append(visits, v)
		}
	}
	slices.SortStableFunc(visits, func(a, b visit) int {
		if c := cmp.Compare(a.due, b.due); c != 0 {
			return c
		}
		return cmp.Compare(a.webhookID, b.webhookID)
	})
	return visits, nil
}

// markedHeads returns, in txn, the webhooks with a wn marker (except those
// in skip) that have something queued and are not disabled, each with the
// due time of its first delivery or the end of its hold.
func (s *Store) markedHeads(txn *badger.Txn, skip map[string]bool) ([]visit, error) {
	var ids []string
	prefix := []byte(prefixDirty)
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		if id := string(it.Item().Key()[len(prefix):]); !skip[id] {
			ids = append(ids, id)
		}
	}
	it.Close()
	if len(ids) == 0 {
		return nil, nil
	}
	var out []visit
	qit := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte(prefixWebhookQueue)})
	defer qit.Close()
	for _, id := range ids {
		due, ok, err := s.headDue(qit, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, visit{due: due, webhookID: id})
		}
	}
	return out, nil
}

// headDue returns, through qit (an iterator over the webhook queues), when
// the webhook's first delivery is due, or its hold ends if later: false
// when it has nothing queued or is disabled.
func (s *Store) headDue(qit *badger.Iterator, webhookID string) (uint64, bool, error) {
	if w, ok := s.index.Load().byID[webhookID]; ok && !w.Enabled {
		return 0, false, nil
	}
	qp := webhookQueuePrefix(webhookID)
	qit.Seek(qp)
	if !qit.ValidForPrefix(qp) {
		return 0, false, nil
	}
	_, due, err := parseWebhookQueueKey(qit.Item().Key())
	if err != nil {
		return 0, false, err
	}
	return max(due, unixNanos(s.Health(webhookID).HoldUntil)), true, nil
}

// dueCandidates scans the due webhooks' queues for up to limit accepted
// deliveries due at or before now. It also returns the scheduled webhooks
// found to have nothing due, whose schedule entry is out of date.
func (s *Store) dueCandidates(now time.Time, limit int, accept func(string) bool) ([]candidate, []string, error) {
	var cands []candidate
	var stale []string
	nowNanos := unixNanos(now)
	err := s.db.View(func(txn *badger.Txn) error {
		visits, err := s.dueVisits(txn, nowNanos)
		if err != nil || len(visits) == 0 {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 16, Prefix: []byte(prefixWebhookQueue)})
		defer it.Close()
		for _, v := range visits {
			prefix := webhookQueuePrefix(v.webhookID)
			found := false
			for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
				item := it.Item()
				_, due, err := parseWebhookQueueKey(item.Key())
				if err != nil {
					return err
				}
				if due > nowNanos {
					break
				}
				found = true
				if accept != nil && !accept(v.webhookID) {
					break
				}
				c := candidate{key: item.KeyCopy(nil), webhookID: v.webhookID, due: due}
				c.seq = binary.BigEndian.Uint64(c.key[len(c.key)-8:])
				val, err := item.ValueCopy(nil)
				if err != nil {
					return fmt.Errorf("reading queue entry: %w", err)
				}
				c.deliveryID = string(val)
				cands = append(cands, c)
				if len(cands) == limit {
					break
				}
			}
			if !found && v.scheduled {
				stale = append(stale, v.webhookID)
			}
			if len(cands) == limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("scanning queue: %w", err)
	}
	// Across webhooks, in queue order too: first attempts start in the
	// order the events were derived.
	slices.SortStableFunc(cands, func(a, b candidate) int {
		if c := cmp.Compare(a.due, b.due); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	return cands, stale, nil
}

// rebuildSchedule recomputes every webhook's schedule entry. Open runs it,
// so that a schedule left inconsistent by a crash between two transactions
// of one Enqueue cannot strand a delivery. It costs one seek per webhook
// with something queued, whatever the length of the queues.
func (s *Store) rebuildSchedule() error {
	ids := map[string]bool{}
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixWebhookQueue)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); {
			id, _, err := parseWebhookQueueKey(it.Item().Key())
			if err != nil {
				return err
			}
			ids[id] = true
			// '0' is the byte after '/': skip the rest of this queue.
			it.Seek([]byte(prefixWebhookQueue + id + "0"))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing webhook queues: %w", err)
	}
	for _, p := range []string{prefixSchedulePtr, prefixDirty} {
		more, err := s.keysWithPrefix(p, 0)
		if err != nil {
			return err
		}
		for _, id := range more {
			ids[id] = true
		}
	}
	for id := range ids {
		err := s.update(func(txn *badger.Txn) error {
			if err := deleteKey(txn, dirtyKey(id)); err != nil {
				return err
			}
			return s.reschedule(txn, id)
		})
		if err != nil {
			return fmt.Errorf("rescheduling webhook %s: %w", id, err)
		}
	}
	// Entries without a pointer cannot be found by reschedule.
	return s.dropOrphanSchedule()
}

// dropOrphanSchedule deletes schedule entries that their webhook's pointer
// does not point to.
func (s *Store) dropOrphanSchedule() error {
	var orphans [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixSchedule)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().KeyCopy(nil)
			due, id, err := parseScheduleKey(k)
			if err != nil {
				orphans = append(orphans, k)
				continue
			}
			item, err := txn.Get(schedulePtrKey(id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				orphans = append(orphans, k)
				continue
			}
			if err != nil {
				return err
			}
			if err := item.Value(func(v []byte) error {
				if len(v) != 8 || binary.BigEndian.Uint64(v) != due {
					orphans = append(orphans, k)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checking schedule: %w", err)
	}
	for _, k := range orphans {
		if err := s.update(func(txn *badger.Txn) error { return deleteKey(txn, k) }); err != nil {
			return err
		}
	}
	return nil
}

// countQueue counts the queued deliveries (Open seeds QueueDepth with it).
func (s *Store) countQueue() (int64, error) {
	var n int64
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixWebhookQueue)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("counting queue: %w", err)
	}
	return n, nil
}

// migrateQueue moves the entries of the single queue used by earlier
// versions ("q/<due><seq>" holding "<deliveryID>/<webhookID>") into the
// per-webhook queues, and indexes their deliveries by age.
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
		err = s.update(func(txn *badger.Txn) error {
			for _, o := range batch {
				if err := deleteKey(txn, o.key); err != nil {
					return err
				}
				if o.delivery == "" {
					continue
				}
				var d Delivery
				err := getJSON(txn, deliveryKey(o.delivery), "delivery "+o.delivery, &d)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if d.State != StatePending {
					continue
				}
				if err := txn.Set(webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq), []byte(d.ID)); err != nil {
					return fmt.Errorf("writing queue entry: %w", err)
				}
				if err := txn.Set(oldestKey(d.CreatedAt, d.Seq), []byte(d.ID)); err != nil {
					return fmt.Errorf("writing age index: %w", err)
				}
			}
			return nil
		})
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

// OldestPending returns when the oldest pending delivery was created; ok is
// false when none is pending. It costs one seek.
func (s *Store) OldestPending() (time.Time, bool, error) {
	var at time.Time
	var ok bool
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixOldest)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
		defer it.Close()
		it.Seek(prefix)
		if !it.ValidForPrefix(prefix) {
			return nil
		}
		k := it.Item().Key()
		if len(k) != len(prefixOldest)+stampLen {
			return fmt.Errorf("malformed age index key %q", k)
		}
		at, ok = nanosTime(binary.BigEndian.Uint64(k[len(prefixOldest):])), true
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reading oldest pending delivery: %w", err)
	}
	return at, ok, nil
}
