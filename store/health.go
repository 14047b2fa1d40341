package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// loadHealth reads every stored Health into the in-memory cache.
func (s *Store) loadHealth() error {
	m := map[string]Health{}
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixHealth)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			var h Health
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &h) }); err != nil {
				return fmt.Errorf("decoding %s: %w", it.Item().Key(), err)
			}
			m[string(it.Item().Key()[len(prefix):])] = h
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading webhook health: %w", err)
	}
	s.healthMu.Lock()
	s.health = m
	s.healthMu.Unlock()
	return nil
}

// Health returns what is remembered about a webhook's receiver (the zero
// Health for a healthy or unknown webhook). It reads memory only.
func (s *Store) Health(webhookID string) Health {
	s.healthMu.RLock()
	defer s.healthMu.RUnlock()
	return s.health[webhookID]
}

// SetHealth stores a webhook's Health (the zero Health removes the record).
// ClaimDue and NextDue read holds from the cache, so a hold takes effect at
// their next call. It returns a wrapped ErrNotFound if the webhook does not
// exist. The cache is updated under the same lock as the write, so the
// cache follows the database's order.
func (s *Store) SetHealth(webhookID string, h Health) error {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	err := s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(webhookKey(webhookID)); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return fmt.Errorf("webhook %s: %w", webhookID, ErrNotFound)
			}
			return fmt.Errorf("reading webhook %s: %w", webhookID, err)
		}
		if h.IsZero() {
			if err := deleteKey(txn, healthKey(webhookID)); err != nil {
				return err
			}
		} else if err := setRecord(txn, healthKey(webhookID), "health of webhook", webhookID, &h, 0); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("setting health of webhook %s: %w", webhookID, err)
	}
	if h.IsZero() {
		delete(s.health, webhookID)
	} else {
		s.health[webhookID] = h
	}
	return nil
}

// dropHealth forgets a webhook's health in memory, after its record was
// deleted.
func (s *Store) dropHealth(webhookID string) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	delete(s.health, webhookID)
}

// BreakerCounts is how many webhooks are in each delivery state.
type BreakerCounts struct {
	Closed   int // delivering normally
	Open     int // paused until their next probe
	HalfOpen int // paused, next probe due
	Disabled int // turned off, by an operator or the delivery system
}

// CountBreakers counts the webhooks in each delivery state at now. It reads
// memory only.
func (s *Store) CountBreakers(now time.Time) BreakerCounts {
	var c BreakerCounts
	idx := s.index.Load()
	s.healthMu.RLock()
	defer s.healthMu.RUnlock()
	for _, w := range idx.all {
		h := s.health[w.ID]
		switch {
		case !w.Enabled:
			c.Disabled++
		case h.Breaker != BreakerOpen:
			c.Closed++
		case h.HoldUntil.After(now):
			c.Open++
		default:
			c.HalfOpen++
		}
	}
	return c
}
