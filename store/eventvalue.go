package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// An event's value (ev/<eventID>) carries, besides the event, the number of
// its deliveries that are still pending: a version byte (eventRecordV2),
// the count as a uvarint, then the fields of the event's binary record
// (Event.appendRecord). The event gets the record TTL when the count drops
// to 0. Earlier versions kept one key per pending delivery (evp/, migrated
// at open, see migrateEventMarkers), and finishing a delivery walked them.
//
// Values written by earlier versions, a version 1 binary record or JSON,
// are still read, with a count of 0.
//
// Every change of a stored event's count is made under Store.releaseMu
// (EnqueueDelivery adds one, a completion batch takes off one per finished
// delivery), writes a brand-new event (Enqueue), or is made by Open before
// the store is used (migrateEventMarkers), so no change is lost by
// interleaving, even where a batch uses the value a lease kept instead of
// reading it (see leases).

// eventRecordV2 is the first byte of an event value with a pending count.
const eventRecordV2 = 0x02

// errShortEventValue reports an event value cut short in its count.
var errShortEventValue = errors.New("event value truncated")

// encodeEventValue returns the value of event ev with pending deliveries.
func encodeEventValue(ev *Event, pending uint64) []byte {
	// The version byte, then seven varints at most: the count, four
	// lengths and a time.
	b := make([]byte, 0, 1+7*binary.MaxVarintLen64+len(ev.ID)+len(ev.Trigger)+len(ev.APIKey)+len(ev.Payload))
	b = append(b, eventRecordV2)
	b = binary.AppendUvarint(b, pending)
	return ev.appendRecord(b)
}

// splitEventValue returns the pending count of a version 2 event value and
// the event's fields after it.
func splitEventValue(val []byte) (pending uint64, fields []byte, err error) {
	if len(val) == 0 || val[0] != eventRecordV2 {
		return 0, nil, errors.New("not a version 2 event value")
	}
	pending, n := binary.Uvarint(val[1:])
	if n <= 0 {
		return 0, nil, errShortEventValue
	}
	return pending, val[1+n:], nil
}

// decodeEventValue decodes an event value: version 2, or a record of an
// earlier version (binary or JSON), which has a count of 0.
func decodeEventValue(val []byte) (ev Event, pending uint64, err error) {
	if len(val) == 0 || val[0] != eventRecordV2 {
		if err := decodeRecord(val, &ev); err != nil {
			return Event{}, 0, err
		}
		return ev, 0, nil
	}
	pending, fields, err := splitEventValue(val)
	if err != nil {
		return Event{}, 0, err
	}
	rd := &recordReader{b: fields}
	ev.decodeRecord(rd)
	if rd.err != nil {
		return Event{}, 0, rd.err
	}
	return ev, pending, nil
}

// eventPending returns the pending count of an event value without
// decoding the event: 0 for a value of an earlier version.
func eventPending(val []byte) (uint64, error) {
	if len(val) == 0 || val[0] != eventRecordV2 {
		return 0, nil
	}
	pending, _, err := splitEventValue(val)
	return pending, err
}

// withPending returns the event value val with its count set to pending.
// A version 2 or 1 value is re-spliced without decoding the event; a JSON
// one (written by an earlier version) is decoded and re-encoded. Either way
// the result is a version 2 value.
func withPending(val []byte, pending uint64) ([]byte, error) {
	var fields []byte
	switch {
	case len(val) > 0 && val[0] == eventRecordV2:
		var err error
		if _, fields, err = splitEventValue(val); err != nil {
			return nil, err
		}
	case len(val) > 0 && val[0] == recordV1:
		fields = val[1:]
	default:
		var ev Event
		if err := decodeRecord(val, &ev); err != nil {
			return nil, err
		}
		return encodeEventValue(&ev, pending), nil
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(fields))
	b = append(b, eventRecordV2)
	b = binary.AppendUvarint(b, pending)
	return append(b, fields...), nil
}

// getEvent reads the event with that ID in txn, or returns a wrapped
// ErrNotFound.
func getEvent(txn *badger.Txn, id string) (ev Event, pending uint64, err error) {
	item, err := txn.Get(eventKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Event{}, 0, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Event{}, 0, fmt.Errorf("reading event %s: %w", id, err)
	}
	err = item.Value(func(val []byte) error {
		var err error
		ev, pending, err = decodeEventValue(val)
		return err
	})
	if err != nil {
		return Event{}, 0, fmt.Errorf("decoding event %s: %w", id, err)
	}
	return ev, pending, nil
}
