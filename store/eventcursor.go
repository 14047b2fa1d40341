package store

import (
	"bytes"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// cursorSteps is how many keys eventCursor steps over before it seeks.
const cursorSteps = 4

// eventCursor reads, in one transaction, the values of events asked for in
// about the order of their keys, as a claim asks for the events of a
// webhook's queue: event IDs start with their creation time (ids.go), so
// the next event is usually the next key. A point read (Txn.Get) looks the
// key up again in every level of the LSM tree and decodes its table block;
// the cursor's iterator stays on the block and steps to the next key. It
// seeks only when the key asked for is behind it or more than cursorSteps
// keys ahead.
//
// It reads in a read-only transaction of its own, opened at its first
// read: an iterator in a read-write transaction would add every key it
// steps over to the transaction's reads, and a completion writing one of
// those events (a delivery in flight) would make the claim conflict. So
// it must be created after the claim has taken its leases, whose copies
// must be read after (see leases); its snapshot is then at least as new
// as the claim's transaction's. A claim that does not find an event reads
// it again in its own transaction before it acts on the absence.
type eventCursor struct {
	db  *badger.DB
	txn *badger.Txn
	it  *badger.Iterator
}

// get returns a copy of the value of the event with that ID, or a wrapped
// ErrNotFound, as getRaw does.
func (c *eventCursor) get(id string) ([]byte, error) {
	key := eventKey(id)
	prefix := key[:len(prefixEvent)]
	switch {
	case c.it == nil:
		c.txn = c.db.NewTransaction(false)
		c.it = c.txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
		c.it.Seek(key)
	case !c.it.ValidForPrefix(prefix) || bytes.Compare(c.it.Item().Key(), key) > 0:
		c.it.Seek(key)
	default:
		for i := 0; c.it.ValidForPrefix(prefix) && bytes.Compare(c.it.Item().Key(), key) < 0; i++ {
			if i == cursorSteps {
				c.it.Seek(key)
				break
			}
			c.it.Next()
		}
	}
	if !c.it.ValidForPrefix(prefix) || !bytes.Equal(c.it.Item().Key(), key) {
		return nil, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	v, err := c.it.Item().ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("reading event %s: %w", id, err)
	}
	return v, nil
}

// close closes the iterator and its transaction, if the cursor opened
// them.
func (c *eventCursor) close() {
	if c.it == nil {
		return
	}
	c.it.Close()
	c.txn.Discard()
	c.it, c.txn = nil, nil
}
