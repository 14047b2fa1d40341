package store

import (
	"bytes"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// A queue entry's value is the delivery's ID, a newline and the delivery
// record (record.go), the same as under dl/<deliveryID>. Every writer of a
// pending delivery writes both in one transaction, so ClaimDue takes the
// delivery from the queue entry its scan for due entries reads anyway
// instead of a point read of dl/, which costs a search of every level of
// the LSM tree once a backlog has left the memtables; it reads the entry
// again only if the delivery may have changed since the scan (see leases).
// The ID comes first so that scans that only need the ID do not decode the
// record.
//
// Earlier versions stored the ID alone; such entries are still read, and
// ClaimDue then loads the delivery from dl/.

// queueEntryValue returns the value of the queue entry of the delivery
// with that ID, whose record (encodeRecord) is enc.
func queueEntryValue(id string, enc []byte) []byte {
	v := make([]byte, 0, len(id)+1+len(enc))
	v = append(v, id...)
	v = append(v, '\n')
	return append(v, enc...)
}

// queueEntryID returns the delivery ID of a queue entry's value.
func queueEntryID(v []byte) string { return string(queueEntryIDBytes(v)) }

// queueEntryIDBytes returns the delivery ID of a queue entry's value, as
// a part of it.
func queueEntryIDBytes(v []byte) []byte {
	if i := bytes.IndexByte(v, '\n'); i >= 0 {
		return v[:i]
	}
	return v
}

// queueEntryDelivery decodes the delivery carried by a queue entry's
// value; ok is false for an entry of an earlier version, which carries
// only the ID.
func queueEntryDelivery(v []byte) (d Delivery, ok bool, err error) {
	i := bytes.IndexByte(v, '\n')
	if i < 0 {
		return Delivery{}, false, nil
	}
	if err := decodeRecord(v[i+1:], &d); err != nil {
		return Delivery{}, false, fmt.Errorf("decoding queue entry of delivery %s: %w", v[:i], err)
	}
	return d, true, nil
}

// setPending writes the pending delivery d under dl/ and its queue entry,
// without expiry, and keeps its age index entry (see OldestPending): it
// writes the entry if d is displaced, and deletes it if d is not but may
// have one, that is if indexed is set. Callers set indexed when d was
// displaced before this write (displaced, with d as it was), or when they
// cannot tell. It returns the age key it wrote, nil if none, which the
// caller lowers the age bound to before and after the commit (bounds.go).
// The caller deletes any earlier queue entry of d.
func setPending(txn *badger.Txn, d *Delivery, indexed bool) ([]byte, error) {
	enc, err := encodeRecord(d)
	if err != nil {
		return nil, fmt.Errorf("encoding delivery %s: %w", d.ID, err)
	}
	if err := txn.Set(deliveryKey(d.ID), enc); err != nil {
		return nil, fmt.Errorf("writing delivery %s: %w", d.ID, err)
	}
	if err := txn.Set(webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq), queueEntryValue(d.ID, enc)); err != nil {
		return nil, fmt.Errorf("writing queue entry of delivery %s: %w", d.ID, err)
	}
	ak := oldestKey(d.CreatedAt, d.Seq)
	switch {
	case displaced(d):
		if err := txn.Set(ak, []byte(d.ID)); err != nil {
			return nil, fmt.Errorf("writing age index entry of delivery %s: %w", d.ID, err)
		}
		return ak, nil
	case indexed:
		if err := deleteKey(txn, ak); err != nil {
			return nil, err
		}
	}
	return nil, nil
}
