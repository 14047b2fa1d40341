package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// watchRetention is how long a watch record outlives its deadline in
// Badger (as a TTL), so a record that nobody deletes (the process died and
// never came back to give it up) still vanishes.
const watchRetention = 24 * time.Hour

// Watch is an uploaded entry waiting for its Processed event: the part of
// a watch that survives a restart. It deliberately has no field for the
// caller's credentials (email, userKey, secKey): those are held in memory
// only and are lost with the process, so that nothing secret reaches disk.
type Watch struct {
	// ID identifies the watch; it must not contain '/'.
	ID string `json:"id"`
	// APIKey is the collection key (the upload's "key" parameter).
	APIKey string `json:"apiKey"`
	// EntryID is the entry being processed.
	EntryID string `json:"entryId"`
	// Host is the Host of the upload request, used to pick the handler
	// chain that polls for it after a restart.
	Host string `json:"host,omitempty"`
	// CreatedAt is when the upload was answered.
	CreatedAt time.Time `json:"createdAt"`
	// Deadline is when the watch gives up.
	Deadline time.Time `json:"deadline"`
}

// validateWatchID rejects IDs that would break the key layout.
func validateWatchID(id string) error {
	if id == "" {
		return errors.New("watch ID is empty")
	}
	if strings.Contains(id, "/") {
		return fmt.Errorf("watch ID %q contains '/'", id)
	}
	return nil
}

func watchKey(id string) []byte { return []byte(prefixWatch + id) }

// PutWatch creates or replaces a watch. The record expires from Badger a
// day after its deadline even if DeleteWatch is never called.
func (s *Store) PutWatch(w Watch) error {
	if err := validateWatchID(w.ID); err != nil {
		return fmt.Errorf("storing watch: %w", err)
	}
	ttl := time.Until(w.Deadline) + watchRetention
	if ttl < time.Second {
		ttl = time.Second
	}
	return s.update(func(txn *badger.Txn) error {
		return setRecord(txn, watchKey(w.ID), "watch", w.ID, w, ttl)
	})
}

// DeleteWatch removes a watch. Deleting a watch that does not exist is not
// an error.
func (s *Store) DeleteWatch(id string) error {
	if err := validateWatchID(id); err != nil {
		return fmt.Errorf("deleting watch: %w", err)
	}
	return s.update(func(txn *badger.Txn) error {
		return deleteKey(txn, watchKey(id))
	})
}

// Watches returns every stored watch, oldest first (by CreatedAt, then ID).
func (s *Store) Watches() ([]Watch, error) {
	var out []Watch
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixWatch)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			var w Watch
			if err := it.Item().Value(func(val []byte) error { return json.Unmarshal(val, &w) }); err != nil {
				return fmt.Errorf("decoding watch %s: %w", it.Item().Key(), err)
			}
			out = append(out, w)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading watches: %w", err)
	}
	slices.SortFunc(out, func(a, b Watch) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}
