package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// getRecord decodes the value at key into v. A missing key gives a wrapped
// ErrNotFound naming kind and id (for example "delivery msg_x").
func getRecord(txn *badger.Txn, key []byte, kind, id string, v any) error {
	what := func() string { return kind + " " + id }
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%s: %w", what(), ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", what(), err)
	}
	if err := item.Value(func(val []byte) error { return decodeRecord(val, v) }); err != nil {
		return fmt.Errorf("decoding %s: %w", what(), err)
	}
	return nil
}

// setRecord encodes v at key, expiring after ttl unless ttl is 0.
func setRecord(txn *badger.Txn, key []byte, kind, id string, v any, ttl time.Duration) error {
	what := func() string { return kind + " " + id }
	val, err := encodeRecord(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", what(), err)
	}
	e := badger.NewEntry(key, val)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	if err := txn.SetEntry(e); err != nil {
		return fmt.Errorf("writing %s: %w", what(), err)
	}
	return nil
}

// getRaw returns a copy of the value at key, or a wrapped ErrNotFound.
func getRaw(txn *badger.Txn, key []byte, what string) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return v, nil
}
