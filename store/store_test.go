package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// t0 is the fixed "now" most tests start from.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)

// backends names the two ways a store is opened in tests.
var backends = []struct {
	name string
	opts func(t testing.TB) Options
}{
	{"memory", func(testing.TB) Options { return Options{InMemory: true} }},
	{"disk", func(t testing.TB) Options { return Options{Dir: t.TempDir()} }},
}

// openStore opens a store and closes it at the end of the test.
// reopen closes s and opens the store in dir again, as a restart would.
func reopen(t testing.TB, s *Store, dir string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return openStore(t, Options{Dir: dir})
}

func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// forEachBackend runs fn against a fresh in-memory and a fresh on-disk
// store.
func forEachBackend(t *testing.T, fn func(t *testing.T, s *Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			fn(t, openStore(t, b.opts(t)))
		})
	}
}

func TestOpenCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	openStore(t, Options{Dir: dir})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("directory permissions = %v, want no group/other access", perm)
	}
}

func TestOpenWithoutDirectory(t *testing.T) {
	if s, err := Open(Options{}); err == nil {
		s.Close()
		t.Fatal("Open without Dir or InMemory succeeded")
	}
}

func TestOpenLockedDirectory(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("first Open: %v", err)
	}
	second, err := Open(Options{Dir: dir})
	if err == nil {
		second.Close()
		first.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("error %v does not wrap ErrLocked", err)
	}
	for _, want := range []string{dir, "another Caddy process or config", "'storage' directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	openStore(t, Options{Dir: dir}) // released by Close
}

func TestCloseTwice(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s, err := Open(b.opts(t))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("first Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := s.RunGC(); err != nil {
				t.Errorf("RunGC after Close: %v", err)
			}
			if _, err := s.Enqueue([]Event{testEvent("e1", "k", "create")}, t0); err == nil {
				t.Error("Enqueue after Close succeeded")
			}
		})
	}
}

func TestRunGC(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
		for i := range 50 {
			ds := mustEnqueue(t, s, testEvent(strings.Repeat("x", i+1), "k", "create"))
			mustComplete(t, s, ds[0].ID, nil, Outcome{State: StateSucceeded})
		}
		if err := s.RunGC(); err != nil {
			t.Fatalf("RunGC: %v", err)
		}
	})
}

func TestRecordTTL(t *testing.T) {
	tests := []struct {
		name string
		ttl  time.Duration
		want time.Duration
	}{
		{"default", 0, DefaultRecordTTL},
		{"custom", time.Hour, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Options{InMemory: true, RecordTTL: tt.ttl})
			mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
			d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
			if got := expiresAt(t, s, eventKey("e1")); got != 0 {
				t.Errorf("pending event expires at %d, want never", got)
			}
			before := time.Now()
			mustComplete(t, s, d.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
			after := time.Now()
			for _, key := range [][]byte{deliveryKey(d.ID), eventKey("e1")} {
				checkExpiry(t, s, key, before.Add(tt.want), after.Add(tt.want))
			}
			at, _, err := s.ListAttempts("wh1", "", 0)
			if err != nil || len(at) != 1 {
				t.Fatalf("ListAttempts = %v, %v; want one attempt", at, err)
			}
			checkExpiry(t, s, firstKey(t, s, attemptPrefix("wh1")), before.Add(tt.want), after.Add(tt.want))
		})
	}
}

// expiresAt returns the Badger expiry (Unix seconds, 0 = never) of key.
func expiresAt(t *testing.T, s *Store, key []byte) uint64 {
	t.Helper()
	var exp uint64
	err := s.DB().View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		exp = item.ExpiresAt()
		return nil
	})
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return exp
}

// firstKey returns the first key with the given prefix.
func firstKey(t *testing.T, s *Store, prefix []byte) []byte {
	t.Helper()
	var key []byte
	err := s.DB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		it.Seek(prefix)
		if it.ValidForPrefix(prefix) {
			key = it.Item().KeyCopy(nil)
		}
		return nil
	})
	if err != nil || key == nil {
		t.Fatalf("no key with prefix %q (%v)", prefix, err)
	}
	return key
}

// checkExpiry fails unless key expires between lo and hi (to the second).
func checkExpiry(t *testing.T, s *Store, key []byte, lo, hi time.Time) {
	t.Helper()
	exp := int64(expiresAt(t, s, key))
	if exp < lo.Unix()-1 || exp > hi.Unix()+1 {
		t.Errorf("%q expires at %v, want between %v and %v", key, time.Unix(exp, 0), lo, hi)
	}
}
