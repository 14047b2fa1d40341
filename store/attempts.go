package store

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
)

// Limits on what an attempt record keeps.
const (
	maxResponseBody = 4096
	maxErrorLen     = 1024
)

// ListAttempts page sizes.
const (
	defaultAttemptsLimit = 50
	maxAttemptsLimit     = 500
)

// recordAttempt stores a (with the record TTL) as the latest attempt of d,
// whose Attempts already counts it. It fills in what a leaves empty and
// caps its texts; a then holds what was stored.
func (s *Store) recordAttempt(txn *badger.Txn, d *Delivery, a *Attempt, seq uint64, now time.Time) error {
	if a.DeliveryID == "" {
		a.DeliveryID = d.ID
	}
	if a.EventID == "" {
		a.EventID = d.EventID
	}
	if a.WebhookID == "" {
		a.WebhookID = d.WebhookID
	}
	if a.Number == 0 {
		a.Number = d.Attempts
	}
	if a.At.IsZero() {
		a.At = now
	}
	a.ResponseBody = truncate(a.ResponseBody, maxResponseBody)
	a.Error = truncate(a.Error, maxErrorLen)
	return setRecord(txn, attemptKey(d.WebhookID, a.At, seq), "attempt of", d.ID, a, s.recordTTL)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ListAttempts returns a page of a webhook's recorded attempts, newest
// first, starting at cursor ("" for the newest), and the cursor of the next
// page ("" when there is none). limit <= 0 means 50; at most 500 are
// returned. An unknown cursor gives a wrapped ErrInvalidCursor. The result
// is never nil.
func (s *Store) ListAttempts(webhookID, cursor string, limit int) ([]Attempt, string, error) {
	if limit <= 0 {
		limit = defaultAttemptsLimit
	}
	limit = min(limit, maxAttemptsLimit)
	prefix := attemptPrefix(webhookID)
	start := prefix
	if cursor != "" {
		c, err := decodeCursor(cursor)
		if err != nil {
			return []Attempt{}, "", fmt.Errorf("listing attempts: %w", err)
		}
		start = append(append([]byte{}, prefix...), c...)
	}

	attempts := []Attempt{}
	next := ""
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(limit, 100), Prefix: prefix})
		defer it.Close()
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			suffix := item.Key()[len(prefix):]
			if len(suffix) != cursorLen {
				continue // another webhook's record; cannot happen with valid IDs
			}
			if len(attempts) == limit {
				next = encodeCursor(suffix)
				return nil
			}
			var a Attempt
			if err := item.Value(func(val []byte) error { return decodeRecord(val, &a) }); err != nil {
				return fmt.Errorf("decoding attempt %x: %w", item.Key(), err)
			}
			attempts = append(attempts, a)
		}
		return nil
	})
	if err != nil {
		return []Attempt{}, "", fmt.Errorf("listing attempts of webhook %s: %w", webhookID, err)
	}
	return attempts, next, nil
}
