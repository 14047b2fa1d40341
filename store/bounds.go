package store

import (
	"bytes"
	"math"
	"slices"
	"sync"
)

// Deleted Badger keys stay in the LSM tree as tombstones until compaction,
// and an iterator walks past every one of them. The queues are written at
// their tail and deleted at their head, so a seek from the start of a
// queue would walk every delivery ever sent through it: a drain of n
// deliveries would cost n²/2 steps. Instead, the store remembers in memory
// a lower bound of each queue's first live key (and of the age index's)
// and seeks from there.
//
// Bounds are hints and never decide correctness on their own. Every
// transaction that writes a key of an indexed range lowers the range's
// bound to that key before it commits and again after, and every lowering
// bumps a generation. A scan reads the bound and generation first, then
// opens its transaction, and raises the bound to the first live key it
// found only if the generation has not moved since. A key committed after
// the scan's snapshot was lowered-to after the scan read the generation,
// so the raise fails or is undone; one committed before the snapshot is
// found, unless its writer lowered the bound after the scan read it, which
// again makes the raise fail: that scan misses the key, and the next one
// (the writer wakes the dispatcher) finds it.

// emptyDue is the due time of a queue known to hold nothing.
const emptyDue = math.MaxUint64

// queueBound is what memory knows of one webhook's queue.
type queueBound struct {
	// key sorts at or before the queue's first live key; nil means the
	// start of the queue.
	key []byte
	// due is at or before the due time of the queue's first delivery
	// (emptyDue: nothing is queued).
	due uint64
	// gen is the bounds' generation when key or due last moved down.
	gen uint64
}

// bounds holds the queue bounds of every webhook with something queued
// and the bound of the age index.
type bounds struct {
	mu     sync.Mutex
	gen    uint64 // store-wide, so a dropped and recreated entry cannot repeat one
	queues map[string]*queueBound
	oldest []byte // nil: the start of the age index; oldestEnd: past its end
	oldGen uint64
}

// oldestEnd sorts after every age index key (those have a stamp of
// stampLen bytes): the age bound of an index known to be empty.
var oldestEnd = append([]byte(prefixOldest), bytes.Repeat([]byte{0xff}, stampLen+1)...)

func newBounds() *bounds {
	return &bounds{queues: make(map[string]*queueBound)}
}

// queuedKey is a queue key written, or about to be, by a transaction.
type queuedKey struct {
	webhookID string
	key       []byte
	due       uint64
}

// lower lowers the bounds of the queues to the given keys and the age
// bound to oldest (when not nil). Writers call it before they commit and
// again after.
func (b *bounds) lower(keys []queuedKey, oldest [][]byte) {
	if len(keys) == 0 && len(oldest) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gen++
	for _, k := range keys {
		q := b.queues[k.webhookID]
		if q == nil {
			b.queues[k.webhookID] = &queueBound{key: slices.Clone(k.key), due: k.due, gen: b.gen}
			continue
		}
		if q.key != nil && bytes.Compare(k.key, q.key) < 0 {
			q.key = slices.Clone(k.key)
		}
		q.due = min(q.due, k.due)
		q.gen = b.gen
	}
	for _, k := range oldest {
		if b.oldest != nil && bytes.Compare(k, b.oldest) < 0 {
			b.oldest = slices.Clone(k)
		}
		b.oldGen = b.gen
	}
}

// queue returns where a scan of the webhook's queue may start (nil: at its
// prefix) and the generation to pass to raise. Call it before opening the
// scan's transaction.
func (b *bounds) queue(webhookID string) ([]byte, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.queues[webhookID]; q != nil {
		return q.key, q.gen
	}
	return nil, b.gen
}

// raise records what a scan that read gen found: the queue's first live
// key and its due time, or, with head nil, that the queue is empty.
func (b *bounds) raise(webhookID string, gen uint64, head []byte, due uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[webhookID]
	switch {
	case q == nil && head == nil:
		return
	case q == nil:
		if gen != b.gen {
			return
		}
		b.queues[webhookID] = &queueBound{key: slices.Clone(head), due: due, gen: gen}
	case q.gen != gen:
		return
	case head == nil:
		delete(b.queues, webhookID)
	default:
		q.key, q.due = slices.Clone(head), due
	}
}

// each calls fn with every webhook whose queue may hold something, the
// earliest its first delivery may be due, and where a scan of its queue
// may start with the generation to pass to raise (see queue).
func (b *bounds) each(fn func(webhookID string, due uint64, from []byte, gen uint64)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, q := range b.queues {
		if q.due != emptyDue {
			fn(id, q.due, q.key, q.gen)
		}
	}
}

// oldestBound returns where a scan of the age index may start (nil: at its
// prefix) and the generation to pass to raiseOldest. Call it before opening
// the scan's transaction.
func (b *bounds) oldestBound() ([]byte, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.oldest, b.oldGen
}

// raiseOldest records what a scan that read gen found: the first live key
// of the age index or, with head nil, that the index is empty from the
// bound on, which moves the bound past its end (a writer lowers it).
func (b *bounds) raiseOldest(gen uint64, head []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.oldGen != gen {
		return
	}
	if head == nil {
		head = oldestEnd
	}
	b.oldest = slices.Clone(head)
}

// resetOldest sets the age bound to key, the first live key of the age
// index or oldestEnd, with a new generation. Only Open calls it, when no
// scan or writer can run (see migrateAgeIndex).
func (b *bounds) resetOldest(key []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gen++
	b.oldest, b.oldGen = slices.Clone(key), b.gen
}
