package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestWatchesRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		now := time.Now().UTC().Truncate(time.Millisecond)
		a := Watch{ID: "wt_a", APIKey: "k1", EntryID: "e1", Host: "proxy.example:8080", CreatedAt: now.Add(-time.Minute), Deadline: now.Add(time.Hour)}
		b := Watch{ID: "wt_b", APIKey: "k2", EntryID: "e2", CreatedAt: now.Add(-2 * time.Minute), Deadline: now.Add(time.Hour)}
		c := Watch{ID: "wt_c", APIKey: "k1", EntryID: "e3", CreatedAt: now.Add(-time.Minute), Deadline: now.Add(time.Hour)}
		for _, w := range []Watch{a, b, c} {
			if err := s.PutWatch(w); err != nil {
				t.Fatalf("PutWatch(%s): %v", w.ID, err)
			}
		}
		got, err := s.Watches()
		if err != nil {
			t.Fatal(err)
		}
		// Oldest first, ties by ID.
		if want := []Watch{b, a, c}; !reflect.DeepEqual(got, want) {
			t.Errorf("Watches() = %+v\nwant %+v", got, want)
		}

		// Put replaces.
		a.EntryID = "e1-again"
		if err := s.PutWatch(a); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteWatch(b.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteWatch("wt_never-stored"); err != nil {
			t.Errorf("deleting a missing watch: %v", err)
		}
		got, err = s.Watches()
		if err != nil {
			t.Fatal(err)
		}
		if want := []Watch{a, c}; !reflect.DeepEqual(got, want) {
			t.Errorf("after replace and delete: %+v\nwant %+v", got, want)
		}
	})
}

func TestWatchIDValidation(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	for _, id := range []string{"", "wt_a/b"} {
		if err := s.PutWatch(Watch{ID: id, Deadline: time.Now().Add(time.Hour)}); err == nil {
			t.Errorf("PutWatch(%q) succeeded", id)
		}
		if err := s.DeleteWatch(id); err == nil {
			t.Errorf("DeleteWatch(%q) succeeded", id)
		}
	}
}

// TestWatchRecordHasNoCredentials checks the stored bytes: exactly the
// documented fields, none of them a credential.
func TestWatchRecordHasNoCredentials(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	w := Watch{ID: "wt_x", APIKey: "k", EntryID: "e", Host: "h", CreatedAt: time.Now(), Deadline: time.Now().Add(time.Hour)}
	if err := s.PutWatch(w); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	var expires uint64
	err := s.DB().View(func(txn *badger.Txn) error {
		item, err := txn.Get(watchKey(w.ID))
		if err != nil {
			return err
		}
		expires = item.ExpiresAt()
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &raw) })
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	want := map[string]bool{"id": true, "apiKey": true, "entryId": true, "host": true, "createdAt": true, "deadline": true}
	for _, k := range keys {
		if !want[k] {
			t.Errorf("stored watch has unexpected field %q", k)
		}
	}
	if len(keys) != len(want) {
		t.Errorf("stored watch fields %v, want %d fields", keys, len(want))
	}
	// The record expires on its own a day after the deadline.
	wantExp := w.Deadline.Add(watchRetention)
	if got := time.Unix(int64(expires), 0); got.Before(wantExp.Add(-time.Minute)) || got.After(wantExp.Add(time.Minute)) {
		t.Errorf("record expires at %v, want about %v", got, wantExp)
	}
}

// TestWatchesSurviveReopen is the restart path at the store level.
func TestWatchesSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	w := Watch{ID: "wt_keep", APIKey: "k", EntryID: "e", CreatedAt: time.Now().UTC().Truncate(time.Millisecond), Deadline: time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)}
	if err := s.PutWatch(w); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir)
	got, err := s.Watches()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], w) {
		t.Errorf("after reopen: %+v, want [%+v]", got, w)
	}
}

func TestWatchesCorruptRecord(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	err := s.DB().Update(func(txn *badger.Txn) error {
		return txn.Set(watchKey("wt_bad"), []byte("{not json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Watches()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("wt_bad")) {
		t.Errorf("Watches() error = %v, want one naming the bad record", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Errorf("corruption reported as not found: %v", err)
	}
}
