package store

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Earlier versions kept one empty key per pending delivery of an event,
// evp/<eventID>/<deliveryID>, and walked them to tell whether an event's
// last pending delivery had finished. The count in the event's value
// (eventvalue.go) replaces them; Open migrates them with
// migrateEventMarkers, before anything else can read or write an event.

// maxMarkerBatch bounds how many markers one migration transaction takes.
const maxMarkerBatch = 1000

// migrateEventMarkers replaces the pending markers of earlier versions by
// the count in their event's value: for every event with markers, its value
// is rewritten as version 2 with, as count, the number of its markers, and
// without TTL; its markers are deleted. It commits in bounded transactions,
// each of which deletes some markers and adds their number to their
// events' counts, so a migration cut short by a crash ends right when the
// store next opens: the markers left are counted on top of the count
// already written. (Counts are only ever added to while markers remain:
// the store is not used until the migration has finished.) Events without
// markers keep their value, which reads with a count of 0.
func (s *Store) migrateEventMarkers() error {
	from := []byte(prefixEventPending)
	for {
		keys, err := s.markerKeys(from, maxMarkerBatch)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		if err := s.migrateMarkers(keys); err != nil {
			return err
		}
		// Seek past the deleted markers rather than walk them again.
		last := keys[len(keys)-1]
		from = append(last[:len(last):len(last)], 0)
	}
}

// markerKeys returns up to limit marker keys, from the first at or after
// from.
func (s *Store) markerKeys(from []byte, limit int) ([][]byte, error) {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixEventPending)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
		defer it.Close()
		for it.Seek(from); it.ValidForPrefix(prefix) && len(keys) < limit; it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing event markers: %w", err)
	}
	return keys, nil
}

// markerEventID returns the event ID of a marker key. Event IDs may
// contain '/', delivery IDs never do, so the event ID ends at the last
// '/'. ok is false for a key without event ID.
func markerEventID(key []byte) (string, bool) {
	rest := key[len(prefixEventPending):]
	i := bytes.LastIndexByte(rest, '/')
	if i <= 0 {
		return "", false
	}
	return string(rest[:i]), true
}

// migrateMarkers deletes the markers keys and adds their number to their
// events' counts, in one transaction or, if they do not fit, in several.
func (s *Store) migrateMarkers(keys [][]byte) error {
	err := s.update(func(txn *badger.Txn) error {
		counts := make(map[string]uint64)
		for _, k := range keys {
			if err := deleteKey(txn, k); err != nil {
				return err
			}
			if id, ok := markerEventID(k); ok {
				counts[id]++
			}
		}
		for id, n := range counts {
			if err := addMarked(txn, id, n); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) && len(keys) > 1 {
		if err := s.migrateMarkers(keys[:len(keys)/2]); err != nil {
			return err
		}
		return s.migrateMarkers(keys[len(keys)/2:])
	}
	if err != nil {
		return fmt.Errorf("migrating event markers: %w", err)
	}
	return nil
}

// addMarked adds n to the count of the event with that ID and removes its
// TTL. A missing event is left missing: its deliveries fail when claimed,
// as they did. A value that cannot be read is left as it is: the store
// still opens, and the event's deliveries fail to claim, as they did.
func addMarked(txn *badger.Txn, id string, n uint64) error {
	val, err := getRaw(txn, eventKey(id), "event "+id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	pending, err := eventPending(val)
	if err != nil {
		return nil
	}
	val, err = withPending(val, pending+n)
	if err != nil {
		return nil
	}
	return setEventValue(txn, id, val, 0)
}
