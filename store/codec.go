package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// getJSON decodes the value at key into v. A missing key gives a wrapped
// ErrNotFound naming what (for example "delivery msg_x").
func getJSON(txn *badger.Txn, key []byte, what string, v any) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", what, err)
	}
	if err := item.Value(func(val []byte) error { return json.Unmarshal(val, v) }); err != nil {
		return fmt.Errorf("decoding %s: %w", what, err)
	}
	return nil
}

// setJSON encodes v at key, expiring after ttl unless ttl is 0.
func setJSON(txn *badger.Txn, key []byte, what string, v any, ttl time.Duration) error {
	val, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", what, err)
	}
	e := badger.NewEntry(key, val)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	if err := txn.SetEntry(e); err != nil {
		return fmt.Errorf("writing %s: %w", what, err)
	}
	return nil
}
