package store

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// webhookIndex is an immutable snapshot of all webhooks, so that Enqueue
// finds the receivers of an event without touching the database.
type webhookIndex struct {
	byID     map[string]*Webhook
	byAPIKey map[string][]*Webhook // each sorted by CreatedAt, then ID
	all      []*Webhook            // sorted by CreatedAt, then ID
}

// newWebhookIndex indexes hooks, which it takes ownership of.
func newWebhookIndex(hooks []*Webhook) *webhookIndex {
	slices.SortFunc(hooks, compareWebhooks)
	idx := &webhookIndex{
		byID:     make(map[string]*Webhook, len(hooks)),
		byAPIKey: make(map[string][]*Webhook),
		all:      hooks,
	}
	for _, w := range hooks {
		idx.byID[w.ID] = w
		idx.byAPIKey[w.APIKey] = append(idx.byAPIKey[w.APIKey], w)
	}
	return idx
}

// with returns a new index in which w replaces the webhook with its ID (or
// is added); w nil removes the webhook with ID id.
func (idx *webhookIndex) with(id string, w *Webhook) *webhookIndex {
	hooks := make([]*Webhook, 0, len(idx.all)+1)
	for _, h := range idx.all {
		if h.ID != id {
			hooks = append(hooks, h)
		}
	}
	if w != nil {
		hooks = append(hooks, w)
	}
	return newWebhookIndex(hooks)
}

func compareWebhooks(a, b *Webhook) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// clone returns a copy of w that shares no memory with it.
func (w *Webhook) clone() *Webhook {
	c := *w
	c.Triggers = slices.Clone(w.Triggers)
	c.PreviousSecrets = slices.Clone(w.PreviousSecrets)
	return &c
}

// loadWebhooks reads every webhook from the database.
func (s *Store) loadWebhooks() ([]*Webhook, error) {
	var hooks []*Webhook
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(prefixWebhook)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			w := new(Webhook)
			if err := it.Item().Value(func(val []byte) error { return json.Unmarshal(val, w) }); err != nil {
				return fmt.Errorf("decoding webhook %s: %w", it.Item().Key(), err)
			}
			hooks = append(hooks, w)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading webhooks: %w", err)
	}
	return hooks, nil
}

// validateWebhookID rejects IDs that would break the key layout.
func validateWebhookID(id string) error {
	if id == "" {
		return errors.New("webhook ID is empty")
	}
	if strings.Contains(id, "/") {
		return fmt.Errorf("webhook ID %q contains '/'", id)
	}
	return nil
}

// Subscribed reports whether an enabled webhook of the collection apiKey
// subscribes to trigger, that is, whether Enqueue would create a delivery
// for such an event. It reads memory only.
func (s *Store) Subscribed(apiKey, trigger string) bool {
	for _, w := range s.index.Load().byAPIKey[apiKey] {
		if w.Enabled && w.Subscribed(trigger) {
			return true
		}
	}
	return false
}

// CreateWebhook stores a new webhook. The caller fills in ID, Secret and
// the timestamps. It fails with a wrapped ErrExists if the ID is taken.
func (s *Store) CreateWebhook(w Webhook) error {
	if err := validateWebhookID(w.ID); err != nil {
		return fmt.Errorf("creating webhook: %w", err)
	}
	return s.writeWebhook(w.ID, w.clone(), func(txn *badger.Txn) error {
		_, err := txn.Get(webhookKey(w.ID))
		if err == nil {
			return fmt.Errorf("creating webhook %s: %w", w.ID, ErrExists)
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("creating webhook %s: %w", w.ID, err)
		}
		return setRecord(txn, webhookKey(w.ID), "webhook", w.ID, w, 0)
	})
}

// GetWebhook returns the webhook with the given ID, or a wrapped
// ErrNotFound.
func (s *Store) GetWebhook(id string) (Webhook, error) {
	w, ok := s.index.Load().byID[id]
	if !ok {
		return Webhook{}, fmt.Errorf("webhook %s: %w", id, ErrNotFound)
	}
	return *w.clone(), nil
}

// ListWebhooks returns the webhooks of one API key, or all of them when
// apiKey is empty, sorted by CreatedAt then ID. The result is never nil.
func (s *Store) ListWebhooks(apiKey string) ([]Webhook, error) {
	idx := s.index.Load()
	hooks := idx.all
	if apiKey != "" {
		hooks = idx.byAPIKey[apiKey]
	}
	out := make([]Webhook, 0, len(hooks))
	for _, w := range hooks {
		out = append(out, *w.clone())
	}
	return out, nil
}

// UpdateWebhook replaces the stored webhook with w (matched by ID), or
// returns a wrapped ErrNotFound. Enabling a disabled webhook forgets its
// Health (breaker and failure streak), so it starts afresh.
func (s *Store) UpdateWebhook(w Webhook) error {
	var enabled bool
	err := s.writeWebhook(w.ID, w.clone(), func(txn *badger.Txn) error {
		old := new(Webhook)
		if err := getRecord(txn, webhookKey(w.ID), "webhook", w.ID, old); err != nil {
			return fmt.Errorf("updating webhook: %w", err)
		}
		enabled = !old.Enabled && w.Enabled
		if enabled {
			if err := deleteKey(txn, healthKey(w.ID)); err != nil {
				return err
			}
		}
		return setRecord(txn, webhookKey(w.ID), "webhook", w.ID, w, 0)
	})
	if err == nil && enabled {
		s.dropHealth(w.ID)
	}
	return err
}

// DeleteWebhook removes a webhook, or returns a wrapped ErrNotFound. Its
// pending deliveries stay queued; ClaimDue hands them out with a nil
// Webhook so that the dispatcher can finish them.
func (s *Store) DeleteWebhook(id string) error {
	err := s.writeWebhook(id, nil, func(txn *badger.Txn) error {
		if err := getRecord(txn, webhookKey(id), "webhook", id, new(Webhook)); err != nil {
			return fmt.Errorf("deleting webhook: %w", err)
		}
		if err := txn.Delete(webhookKey(id)); err != nil {
			return fmt.Errorf("deleting webhook %s: %w", id, err)
		}
		return deleteKey(txn, healthKey(id))
	})
	if err == nil {
		s.dropHealth(id)
	}
	return err
}

// DisableWebhook turns a webhook off, recording why (for example
// "410 Gone"), or returns a wrapped ErrNotFound.
func (s *Store) DisableWebhook(id, reason string) error {
	var disabled *Webhook
	return s.writeWebhookFunc(id, func() *Webhook { return disabled }, func(txn *badger.Txn) error {
		w := new(Webhook)
		if err := getRecord(txn, webhookKey(id), "webhook", id, w); err != nil {
			return fmt.Errorf("disabling webhook: %w", err)
		}
		w.Enabled = false
		w.DisabledReason = reason
		w.UpdatedAt = time.Now()
		disabled = w
		return setRecord(txn, webhookKey(id), "webhook", id, w, 0)
	})
}

// writeWebhook runs fn and, once it has committed, puts w (nil: nothing)
// in the index in place of the webhook with ID id.
func (s *Store) writeWebhook(id string, w *Webhook, fn func(txn *badger.Txn) error) error {
	return s.writeWebhookFunc(id, func() *Webhook { return w }, fn)
}

// writeWebhookFunc is writeWebhook with the new webhook known only after fn
// has run.
func (s *Store) writeWebhookFunc(id string, w func() *Webhook, fn func(txn *badger.Txn) error) error {
	s.webhookMu.Lock()
	defer s.webhookMu.Unlock()
	if err := s.update(fn); err != nil {
		return err
	}
	// ClaimDue and NextDue read whether a webhook is enabled from the
	// index, so the change takes effect at their next call.
	s.index.Store(s.index.Load().with(id, w()))
	return nil
}
