package store

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// pendingDeliveries returns every pending delivery under dl/, by ID.
func pendingDeliveries(t testing.TB, s *Store) map[string]Delivery {
	t.Helper()
	out := map[string]Delivery{}
	err := s.DB().View(func(txn *badger.Txn) error {
		prefix := []byte(prefixDelivery)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			var d Delivery
			if err := it.Item().Value(func(v []byte) error { return decodeRecord(v, &d) }); err != nil {
				return err
			}
			if d.State == StatePending {
				out[d.ID] = d
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing deliveries: %v", err)
	}
	return out
}

// bruteOldest returns the creation time of the oldest pending delivery,
// found by reading them all.
func bruteOldest(t testing.TB, s *Store) (time.Time, bool) {
	t.Helper()
	var oldest uint64
	ok := false
	for _, d := range pendingDeliveries(t, s) {
		if c := unixNanos(d.CreatedAt); !ok || c < oldest {
			oldest, ok = c, true
		}
	}
	if !ok {
		return time.Time{}, false
	}
	return nanosTime(oldest), true
}

// ageIndex returns the entries of the age index, key to delivery ID.
func ageIndex(t testing.TB, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.DB().View(func(txn *badger.Txn) error {
		prefix := []byte(prefixOldest)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key())] = string(v)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing age index: %v", err)
	}
	return out
}

// checkAgeIndex checks the invariant of the age index: it holds an entry
// for exactly the displaced pending deliveries.
func checkAgeIndex(t testing.TB, s *Store) {
	t.Helper()
	want := map[string]string{}
	for _, d := range pendingDeliveries(t, s) {
		if displaced(&d) {
			want[string(oldestKey(d.CreatedAt, d.Seq))] = d.ID
		}
	}
	if got := ageIndex(t, s); !maps.Equal(got, want) {
		t.Errorf("age index = %v, want the displaced pending deliveries %v", slices.Sorted(maps.Values(got)), slices.Sorted(maps.Values(want)))
	}
}

// checkOldest compares OldestPending with a brute force over the pending
// deliveries and, unless none is true, with want; and checks the age
// index.
func checkOldest(t testing.TB, s *Store, want time.Time, none bool) {
	t.Helper()
	at, ok, err := s.OldestPending()
	if err != nil {
		t.Fatalf("OldestPending: %v", err)
	}
	bat, bok := bruteOldest(t, s)
	if ok != bok || !at.Equal(bat) {
		t.Errorf("OldestPending = %v, %v; the pending deliveries say %v, %v", at, ok, bat, bok)
	}
	switch {
	case none && ok:
		t.Errorf("OldestPending = %v with nothing pending", at)
	case !none && (!ok || !at.Equal(want)):
		t.Errorf("OldestPending = %v, %v; want %v", at, ok, want)
	}
	checkAgeIndex(t, s)
}

// ageEnv is the state an age index scenario builds: its deliveries by
// name.
type ageEnv struct {
	t  *testing.T
	s  *Store
	ds map[string]Delivery
}

// enqueue enqueues one event of apiKey at at and names its one delivery.
func (e *ageEnv) enqueue(name, apiKey string, at time.Time) {
	e.t.Helper()
	ds, err := e.s.Enqueue([]Event{testEvent("ev-"+name, apiKey, "create")}, at)
	if err != nil || len(ds) != 1 {
		e.t.Fatalf("Enqueue(%s) = %v, %v; want one delivery", name, deliveryIDs(ds), err)
	}
	e.ds[name] = ds[0]
}

// claim claims, at now, the first due delivery of the webhook, which must
// be the named one.
func (e *ageEnv) claim(name, webhookID string, now time.Time) {
	e.t.Helper()
	cl, err := e.s.ClaimDue(now, time.Minute, 1, func(id string) bool { return id == webhookID })
	if err != nil || len(cl) != 1 || cl[0].Delivery.ID != e.ds[name].ID {
		e.t.Fatalf("ClaimDue for %s = %v, %v; want %s", webhookID, claimedIDs(cl), err, e.ds[name].ID)
	}
}

// complete completes the named delivery at now, with an attempt unless
// out puts it back.
func (e *ageEnv) complete(name string, out Outcome, now time.Time) {
	e.t.Helper()
	var a *Attempt
	if out.State != StatePending || out.NextAttemptAt.After(now) {
		a = &Attempt{Status: 500}
	}
	if err := e.s.Complete(e.ds[name].ID, a, out, now); err != nil {
		e.t.Fatalf("Complete(%s): %v", name, err)
	}
}

func (e *ageEnv) retry(name string, due, now time.Time) {
	e.t.Helper()
	e.complete(name, Outcome{State: StatePending, NextAttemptAt: due}, now)
}

func (e *ageEnv) succeed(name string, now time.Time) {
	e.t.Helper()
	e.complete(name, Outcome{State: StateSucceeded}, now)
}

// TestOldestPendingExact checks OldestPending, after every step of each
// scenario, against the creation times of all pending deliveries and the
// expected time, and the age index against the displaced deliveries.
func TestOldestPendingExact(t *testing.T) {
	type step struct {
		name string
		do   func(e *ageEnv)
		want time.Duration // after t0
		none bool          // nothing pending
	}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name  string
		hooks []string // webhook IDs; webhook x has API key "k-x"
		steps []step
	}{{
		name:  "fresh across webhooks, disabled and held",
		hooks: []string{"a", "b", "c"},
		steps: []step{
			{"enqueue", func(e *ageEnv) {
				e.enqueue("c1", "k-c", at(0))
				e.enqueue("b1", "k-b", at(time.Second))
				e.enqueue("a1", "k-a", at(2*time.Second))
			}, 0, false},
			{"disable b, hold c", func(e *ageEnv) {
				if err := e.s.DisableWebhook("b", "test"); err != nil {
					e.t.Fatal(err)
				}
				if err := e.s.SetHealth("c", Health{Breaker: BreakerOpen, HoldUntil: at(time.Hour)}); err != nil {
					e.t.Fatal(err)
				}
			}, 0, false},
			{"a sends its delivery", func(e *ageEnv) {
				e.claim("a1", "a", at(2*time.Second))
				e.succeed("a1", at(3*time.Second))
			}, 0, false},
			{"c's hold ends and it sends its delivery", func(e *ageEnv) {
				e.enqueue("a2", "k-a", at(4*time.Second))
				if err := e.s.SetHealth("c", Health{}); err != nil {
					e.t.Fatal(err)
				}
				e.claim("c1", "c", at(4*time.Second))
				e.succeed("c1", at(4*time.Second))
			}, time.Second, false}, // disabled b's
			{"a's too", func(e *ageEnv) { e.succeed("a2", at(5*time.Second)) }, time.Second, false},
			{"b's fails", func(e *ageEnv) { e.complete("b1", Outcome{State: StateFailed}, at(6*time.Second)) }, 0, true},
		},
	}, {
		name:  "oldest retried, younger fresh",
		hooks: []string{"a"},
		steps: []step{
			{"enqueue", func(e *ageEnv) {
				e.enqueue("d1", "k-a", at(0))
				e.enqueue("d2", "k-a", at(time.Minute))
				e.enqueue("d3", "k-a", at(2*time.Minute))
			}, 0, false},
			{"d1 retried", func(e *ageEnv) {
				e.claim("d1", "a", at(0))
				e.retry("d1", at(time.Hour), at(time.Second))
			}, 0, false},
			{"d2 retried", func(e *ageEnv) {
				e.claim("d2", "a", at(time.Minute))
				e.retry("d2", at(2*time.Hour), at(time.Minute+time.Second))
			}, 0, false},
			{"d1 retried again", func(e *ageEnv) { e.retry("d1", at(3*time.Hour), at(time.Hour)) }, 0, false},
			{"d1 succeeds: retried d2 is next", func(e *ageEnv) { e.succeed("d1", at(3*time.Hour)) }, time.Minute, false},
			{"d2 succeeds: fresh d3 is next", func(e *ageEnv) {
				e.claim("d3", "a", at(2*time.Hour))
				e.claim("d2", "a", at(2*time.Hour))
				e.succeed("d2", at(2*time.Hour))
			}, 2 * time.Minute, false},
			{"d3 fails", func(e *ageEnv) { e.complete("d3", Outcome{State: StateFailed}, at(2*time.Hour)) }, 0, true},
		},
	}, {
		name:  "displaced head, older fresh delivery elsewhere",
		hooks: []string{"a", "b"},
		steps: []step{
			{"enqueue", func(e *ageEnv) {
				e.enqueue("b1", "k-b", at(0))
				e.enqueue("a1", "k-a", at(time.Minute))
			}, 0, false},
			{"a1 retried", func(e *ageEnv) {
				e.claim("a1", "a", at(time.Minute))
				e.retry("a1", at(10*time.Minute), at(time.Minute))
			}, 0, false},
			{"b1 succeeds: a1 is next", func(e *ageEnv) {
				e.claim("b1", "b", at(time.Minute))
				e.succeed("b1", at(time.Minute))
			}, time.Minute, false},
			{"a fresh one behind a1", func(e *ageEnv) { e.enqueue("a2", "k-a", at(5*time.Minute)) }, time.Minute, false},
			{"a1 succeeds", func(e *ageEnv) { e.succeed("a1", at(10*time.Minute)) }, 5 * time.Minute, false},
		},
	}, {
		name:  "requeued back to its creation time",
		hooks: []string{"a"},
		steps: []step{
			{"enqueue", func(e *ageEnv) {
				e.enqueue("d1", "k-a", at(0))
				e.enqueue("d2", "k-a", at(time.Minute))
			}, 0, false},
			{"d1 retried", func(e *ageEnv) {
				e.claim("d1", "a", at(0))
				e.retry("d1", at(time.Hour), at(0))
			}, 0, false},
			{"d1 put back first in line", func(e *ageEnv) {
				e.complete("d1", Outcome{State: StatePending, NextAttemptAt: e.ds["d1"].CreatedAt}, at(time.Hour))
			}, 0, false},
			{"d1 retried, then put back at now with the clock fixed", func(e *ageEnv) {
				e.retry("d1", at(time.Hour), at(0))
				e.complete("d1", Outcome{State: StatePending}, at(0))
			}, 0, false},
			{"d1 succeeds", func(e *ageEnv) { e.succeed("d1", at(time.Hour)) }, time.Minute, false},
		},
	}, {
		name:  "deleted webhook",
		hooks: []string{"x", "y"},
		steps: []step{
			{"enqueue", func(e *ageEnv) {
				e.enqueue("x1", "k-x", at(0))
				e.enqueue("x2", "k-x", at(30*time.Second))
				e.enqueue("y1", "k-y", at(time.Minute))
			}, 0, false},
			{"x2 retried", func(e *ageEnv) { e.retry("x2", at(time.Hour), at(time.Minute)) }, 0, false},
			{"x deleted", func(e *ageEnv) {
				if err := e.s.DeleteWebhook("x"); err != nil {
					e.t.Fatal(err)
				}
			}, 0, false},
			{"x1 fails: displaced x2 is next", func(e *ageEnv) {
				e.claim("x1", "x", at(time.Minute))
				e.complete("x1", Outcome{State: StateFailed}, at(time.Minute))
			}, 30 * time.Second, false},
			{"x2 fails", func(e *ageEnv) { e.complete("x2", Outcome{State: StateFailed}, at(time.Hour)) }, time.Minute, false},
		},
	}, {
		name:  "put back before its creation time (clock stepped back)",
		hooks: []string{"a", "b"},
		steps: []step{
			{"enqueue", func(e *ageEnv) {
				e.enqueue("a1", "k-a", at(time.Hour))
				e.enqueue("b1", "k-b", at(30*time.Minute))
			}, 30 * time.Minute, false},
			{"a1 put back at now, before it was created", func(e *ageEnv) {
				e.claim("a1", "a", at(time.Hour))
				e.complete("a1", Outcome{State: StatePending}, at(0))
			}, 30 * time.Minute, false},
			{"b1 succeeds: early a1 is next", func(e *ageEnv) {
				e.claim("b1", "b", at(time.Hour))
				e.succeed("b1", at(time.Hour))
			}, time.Hour, false},
			{"a fresh one behind a1", func(e *ageEnv) { e.enqueue("a2", "k-a", at(10*time.Minute)) }, 10 * time.Minute, false},
			{"a1 succeeds", func(e *ageEnv) { e.succeed("a1", at(time.Hour)) }, 10 * time.Minute, false},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, s *Store) {
				for _, id := range tt.hooks {
					mustCreate(t, s, testWebhook(id, "k-"+id, t0, "create"))
				}
				checkOldest(t, s, time.Time{}, true)
				e := &ageEnv{t: t, s: s, ds: map[string]Delivery{}}
				for _, st := range tt.steps {
					st.do(e)
					if t.Failed() {
						t.Fatalf("step %q failed", st.name)
					}
					t.Logf("after %q", st.name)
					checkOldest(t, s, t0.Add(st.want), st.none)
					if t.Failed() {
						t.FailNow()
					}
				}
			})
		})
	}
}

// countAgeEntries counts the keys of the age index.
func countAgeEntries(t testing.TB, s *Store) int {
	t.Helper()
	return len(ageIndex(t, s))
}

// TestAgeIndexWrites: a delivery sent on its first attempt, or put back
// first in line, never writes to the age index; a retried one has an
// entry until it finishes.
func TestAgeIndexWrites(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	ds := enqueueN(t, s, "k", 3, t0)
	d, err := s.EnqueueDelivery(testEvent("redeliver", "k", "create"), "a", t0)
	if err != nil {
		t.Fatal(err)
	}
	ds = append(ds, d)
	if n := countAgeEntries(t, s); n != 0 {
		t.Fatalf("%d age entries after enqueuing", n)
	}
	cl := mustClaim(t, s, t0, 10)
	if len(cl) != len(ds) {
		t.Fatalf("claimed %v, want %v", claimedIDs(cl), deliveryIDs(ds))
	}
	mustComplete(t, s, ds[0].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	mustComplete(t, s, ds[1].ID, nil, Outcome{State: StatePending, NextAttemptAt: ds[1].CreatedAt})
	mustComplete(t, s, ds[3].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	if n := countAgeEntries(t, s); n != 0 {
		t.Fatalf("%d age entries after first attempts and a put-back", n)
	}
	mustComplete(t, s, ds[2].ID, &Attempt{Status: 500}, Outcome{State: StatePending, NextAttemptAt: t0.Add(time.Minute)})
	if got := ageIndex(t, s); !maps.Equal(got, map[string]string{string(oldestKey(ds[2].CreatedAt, ds[2].Seq)): ds[2].ID}) {
		t.Fatalf("age index after a retry = %q, want %s's entry", got, ds[2].ID)
	}
	mustComplete(t, s, ds[2].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	mustComplete(t, s, ds[1].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	if n := countAgeEntries(t, s); n != 0 {
		t.Errorf("%d age entries once everything finished", n)
	}
	checkOldest(t, s, time.Time{}, true)
}

// TestMigrateAgeIndex opens a store whose age index is as earlier versions
// kept it, an entry for every pending delivery, with dangling entries
// besides: only the displaced pending deliveries keep theirs.
func TestMigrateAgeIndex(t *testing.T) {
	dangling := 2*maxAgeBatch + 500 // several batches
	if raceEnabled {
		dangling = maxAgeBatch + 10
	}
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, testWebhook("a", "k-a", t0, "create"))
	mustCreate(t, s, testWebhook("b", "k-b", t0, "create"))
	e := &ageEnv{t: t, s: s, ds: map[string]Delivery{}}
	e.enqueue("fresh1", "k-a", t0)
	e.enqueue("fresh2", "k-b", t0.Add(time.Minute))
	e.enqueue("retried", "k-a", t0.Add(2*time.Minute))
	e.enqueue("sent", "k-b", t0.Add(3*time.Minute))
	e.enqueue("leased", "k-b", t0.Add(4*time.Minute))
	e.retry("retried", t0.Add(time.Hour), t0.Add(2*time.Minute))
	e.succeed("sent", t0.Add(3*time.Minute))
	// The earlier layout: an entry per pending delivery and per finished
	// one whose entry was left behind, one of a delivery gone, a malformed
	// one, many dangling ones older than everything, and a lease of an
	// earlier version, released at open (due then, before it was created:
	// it becomes displaced).
	wb := s.DB().NewWriteBatch()
	for _, name := range []string{"fresh1", "fresh2", "sent", "leased"} {
		d := e.ds[name]
		if err := wb.Set(oldestKey(d.CreatedAt, d.Seq), []byte(d.ID)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range dangling {
		if err := wb.Set(oldestKey(t0.Add(-time.Hour+time.Duration(i)), uint64(i)), []byte(fmt.Sprintf("msg_gone%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range map[string]string{"wo/short": e.ds["fresh1"].ID, string(leaseKey(e.ds["leased"].ID)): ""} {
		if err := wb.Set([]byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for range 2 { // and again: nothing changes
		s = openStore(t, Options{Dir: dir})
		e.s = s
		want := map[string]string{}
		for _, name := range []string{"retried", "leased"} {
			d, err := s.GetDelivery(e.ds[name].ID)
			if err != nil {
				t.Fatal(err)
			}
			want[string(oldestKey(d.CreatedAt, d.Seq))] = d.ID
		}
		if got := ageIndex(t, s); !maps.Equal(got, want) {
			t.Fatalf("age index after migration = %q, want %q", got, want)
		}
		checkOldest(t, s, t0, false)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, Options{Dir: dir})
	e.s = s
	e.succeed("fresh1", t0.Add(time.Hour))
	checkOldest(t, s, t0.Add(time.Minute), false)
	e.succeed("fresh2", t0.Add(time.Hour))
	checkOldest(t, s, t0.Add(2*time.Minute), false) // retried, from the index
	e.succeed("retried", t0.Add(time.Hour))
	checkOldest(t, s, t0.Add(4*time.Minute), false) // released lease, from the index
	e.succeed("leased", t0.Add(time.Hour))
	checkOldest(t, s, time.Time{}, true)
}

// TestAgeBoundFollowsWriters is TestBoundsFollowWriters for the age
// bound, with a scan that finds the index empty (which moves the bound
// past its end) while a writer adds a key: whatever the order, once the
// writer is done the bound is at or before its key.
func TestAgeBoundFollowsWriters(t *testing.T) {
	written := oldestKey(t0, 10)
	for _, order := range []string{"PRXQ", "PRQX", "RPQX", "RPXQ", "RXPQ"} {
		t.Run(order, func(t *testing.T) {
			b := newBounds()
			b.resetOldest(oldestKey(t0.Add(time.Hour), 1))
			var gen uint64
			for _, step := range order {
				switch step {
				case 'P', 'Q':
					b.lower(nil, [][]byte{written})
				case 'R':
					_, gen = b.oldestBound()
				case 'X':
					b.raiseOldest(gen, nil)
				}
			}
			if from, _ := b.oldestBound(); from != nil && bytes.Compare(from, written) > 0 {
				t.Errorf("age bound %x, want at or before the written key %x", from, written)
			}
		})
	}
	// Without a writer, an empty scan moves the bound past every key.
	b := newBounds()
	_, gen := b.oldestBound()
	b.raiseOldest(gen, nil)
	if from, _ := b.oldestBound(); bytes.Compare(from, oldestKey(time.Unix(0, math.MaxInt64), math.MaxUint64)) <= 0 {
		t.Errorf("age bound after an empty scan = %x, want past the end of the index", from)
	}
}
