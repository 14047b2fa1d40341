package store

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// recordSize returns how much the leases' change record holds: registered
// claims, recorded drops and deliveries being committed.
func recordSize(l *leases) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.claims) + len(l.dropped) + len(l.log) + len(l.committing)
}

// TestClaimTakesDeliveryFromScan checks that ClaimDue takes a delivery that
// has not changed since its scan from what the scan read, without reading
// its queue entry again: once the claim holds the lease, the entry is
// overwritten with a value that does not decode, behind the store's back
// (no lease is dropped, so no change is recorded), and the claim still
// gets the delivery as it was.
func TestClaimTakesDeliveryFromScan(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
	qk := webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq)
	claimHook = func() {
		claimHook = nil
		err := s.DB().Update(func(txn *badger.Txn) error { return txn.Set(qk, []byte(d.ID+"\nnot a record")) })
		if err != nil {
			t.Errorf("overwriting the queue entry: %v", err)
		}
	}
	t.Cleanup(func() { claimHook = nil })
	cl := mustClaim(t, s, t0, 10)
	if len(cl) != 1 {
		t.Fatalf("claimed %v, want %s", claimedIDs(cl), d.ID)
	}
	got := cl[0].Delivery
	if got.ID != d.ID || got.EventID != "e1" || got.Seq != d.Seq || got.State != StatePending || !got.NextAttemptAt.Equal(d.NextAttemptAt) {
		t.Errorf("claimed %+v, want %+v", got, d)
	}
	if string(cl[0].Event.Payload) != `{"id":"e1"}` {
		t.Errorf("event payload = %s", cl[0].Event.Payload)
	}
	// A claim that reads the entry fails: so the first one did not.
	if cl, err := s.ClaimDue(t0.Add(time.Hour), time.Minute, 10, nil); err == nil {
		t.Errorf("claim reading the overwritten entry = %v, want an error", claimedIDs(cl))
	}
}

// TestClaimAfterChangeSinceScan makes another claim take a delivery, and
// Complete it, after a claim's scan found it and before that claim takes
// its lease: the first claim must not hand out what its scan read, which
// is out of date (the change is recorded, and it reads the entry again).
func TestClaimAfterChangeSinceScan(t *testing.T) {
	tests := []struct {
		name  string
		out   Outcome
		again bool // still due at t0, at the same queue key: the claim gets it, as the retry left it
	}{
		{name: "succeeded", out: Outcome{State: StateSucceeded}},
		{name: "retried later", out: Outcome{State: StatePending, NextAttemptAt: t0.Add(time.Hour)}},
		{name: "retried at once", out: Outcome{State: StatePending}, again: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, s *Store) {
				mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
				d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
				// The outer claim's snapshot is open: it finds the delivery
				// as enqueued, then the inner claim takes it and completes
				// it, dropping its lease, before the outer claim leases it.
				scanHook = func() {
					scanHook = nil
					if inner := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(inner), []string{d.ID}) {
						t.Errorf("inner claim = %v, want %s", claimedIDs(inner), d.ID)
					}
					mustComplete(t, s, d.ID, &Attempt{Status: 503}, tt.out)
				}
				t.Cleanup(func() { scanHook = nil })
				outer := mustClaim(t, s, t0, 10)
				if scanHook != nil {
					t.Fatal("the scan hook did not run")
				}
				switch {
				case !tt.again && len(outer) != 0:
					t.Errorf("outer claim = %+v, want nothing", outer)
				case tt.again && (len(outer) != 1 || outer[0].Delivery.ID != d.ID || outer[0].Delivery.Attempts != 1):
					t.Errorf("outer claim = %+v, want %s after 1 attempt", outer, d.ID)
				}
				wantDepth := 0
				if tt.out.State == StatePending {
					wantDepth = 1
				}
				if n := queueDepth(t, s); n != wantDepth {
					t.Errorf("QueueDepth = %d, want %d", n, wantDepth)
				}
				later := mustClaim(t, s, t0.Add(time.Hour), 10)
				switch {
				case wantDepth == 0 && len(later) != 0:
					t.Errorf("claim after the retry time = %+v, want nothing", later)
				case wantDepth == 1 && (len(later) != 1 || later[0].Delivery.Attempts != 1):
					t.Errorf("claim after the retry time = %+v, want %s after 1 attempt", later, d.ID)
				}
			})
		})
	}
}

// TestClaimSeesCompletionBeingCommitted completes a delivery, without its
// lease, after a claim has leased it: the completion has committed when the
// claim's transaction opens, but has not yet dropped the lease. The claim
// must see it, as one that reads the queue entry does, and not hand the
// delivery out.
func TestClaimSeesCompletionBeingCommitted(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
	committed := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	completeHook = func() {
		completeHook = nil
		close(committed)
		<-release
	}
	t.Cleanup(func() { completeHook = nil })
	// Cleanups run last in, first out: this one lets the completer go
	// before the store closes, if the test stops early.
	t.Cleanup(unblock)
	done := make(chan error, 1)
	claimHook = func() {
		claimHook = nil
		go func() { done <- s.Complete(d.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded}, t0) }()
		<-committed
	}
	t.Cleanup(func() { claimHook = nil })
	cl := mustClaim(t, s, t0, 10)
	unblock()
	if err := <-done; err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if len(cl) != 0 {
		t.Errorf("claimed %+v, completed before the claim's transaction", cl)
	}
	if got, err := s.GetDelivery(d.ID); err != nil || got.State != StateSucceeded || got.Attempts != 1 {
		t.Errorf("delivery = %+v, %v; want succeeded after 1 attempt", got, err)
	}
}

// TestClaimReadsQueueEntryBeforeWriting removes a delivery's event and its
// queue entry behind the store's back once a claim holds the delivery's
// lease: the claim, which took the delivery from its scan, must read the
// entry before it fails the delivery for its missing event, and then finds
// the entry gone and leaves the delivery alone.
func TestClaimReadsQueueEntryBeforeWriting(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
	claimHook = func() {
		claimHook = nil
		err := s.DB().Update(func(txn *badger.Txn) error {
			if err := txn.Delete(eventKey("e1")); err != nil {
				return err
			}
			return txn.Delete(webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq))
		})
		if err != nil {
			t.Errorf("deleting the event and the queue entry: %v", err)
		}
	}
	t.Cleanup(func() { claimHook = nil })
	if cl := mustClaim(t, s, t0, 10); len(cl) != 0 {
		t.Errorf("claimed %v, want nothing", claimedIDs(cl))
	}
	if got, err := s.GetDelivery(d.ID); err != nil || got.State != StatePending {
		t.Errorf("delivery = %+v, %v; want it pending, untouched", got, err)
	}
	if n := queueDepth(t, s); n != 1 {
		t.Errorf("QueueDepth = %d, want 1 (the claim wrote nothing)", n)
	}
}

// TestLeasesForgetChanges checks the leases' change record: a drop counts
// as a change only for the claims registered when it is made, a delivery
// being committed has changed for every claim, and what no registered
// claim can ask about is forgotten, so the record stays empty while no
// claim runs.
func TestLeasesForgetChanges(t *testing.T) {
	l := newLeases()
	l.drop("before")
	if n := recordSize(l); n != 0 {
		t.Fatalf("drop with no claim registered: record holds %d", n)
	}
	a := l.beginClaim()
	l.drop("x")
	b := l.beginClaim()
	l.drop("y")
	l.writing([]string{"z"})
	tests := []struct {
		since uint64
		id    string
		want  bool
	}{
		{a, "before", false},
		{a, "x", true},
		{a, "y", true},
		{a, "z", true},
		{b, "x", false},
		{b, "y", true},
		{b, "z", true},
		{b, "other", false},
	}
	for _, tt := range tests {
		if got := l.changedSince(tt.since, []string{tt.id})[tt.id]; got != tt.want {
			t.Errorf("changed since %d: %s = %v, want %v", tt.since, tt.id, got, tt.want)
		}
	}
	if ls, changed := l.take("y", t0, t0.Add(time.Minute), b); ls == nil || !changed {
		t.Errorf("take(y) since %d = %v, %v; want a lease of a changed delivery", b, ls, changed)
	}
	if ls, changed := l.take("x", t0, t0.Add(time.Minute), b); ls == nil || changed {
		t.Errorf("take(x) since %d = %v, %v; want a lease of an unchanged delivery", b, ls, changed)
	}

	l.endClaim(a)
	l.mu.Lock()
	_, keptX := l.dropped["x"]
	_, keptY := l.dropped["y"]
	l.mu.Unlock()
	if keptX || !keptY {
		t.Errorf("after the first claim ended: x kept %v, y kept %v; want only y", keptX, keptY)
	}
	l.written([]string{"z"}, false, nil)
	if got := l.changedSince(b, []string{"z"}); got["z"] {
		t.Error("z changed after a batch that did not commit")
	}
	l.endClaim(b)
	if n := recordSize(l); n != 0 {
		t.Errorf("no claim registered: record holds %d", n)
	}
}

// TestChangeRecordConcurrent claims and completes deliveries from several
// workers, each delivery retried (due at once, at the same queue key) and
// then succeeding, so that completions commit while other claims run:
// every delivery is handed out once per attempt, and once no claim runs,
// the change record is empty.
func TestChangeRecordConcurrent(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	mustCreate(t, s, testWebhook("b", "k", t0, "create"))
	const events = 100
	var want []string
	for i := range events {
		want = append(want, deliveryIDs(mustEnqueue(t, s, testEvent(fmt.Sprint("e", i), "k", "create")))...)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		claimed = map[string]int{}
		errs    = make(chan error, 4)
	)
	// Every delivery is completed twice: the first time as pending, then
	// as succeeded. A claim may come back empty while others hold the
	// rest (or one of them was just put back), so the workers stop on
	// that count, not on an empty claim.
	var completions atomic.Int64
	deadline := time.Now().Add(10 * time.Second)
	for range 4 {
		wg.Go(func() {
			for completions.Load() < int64(2*len(want)) {
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("%d of %d completions before the deadline", completions.Load(), 2*len(want))
					return
				}
				cl, err := s.ClaimDue(t0, time.Hour, 5, nil)
				if err != nil {
					errs <- err
					return
				}
				if len(cl) == 0 {
					runtime.Gosched()
					continue
				}
				for _, c := range cl {
					mu.Lock()
					claimed[c.Delivery.ID]++
					n := claimed[c.Delivery.ID]
					mu.Unlock()
					out := Outcome{State: StateSucceeded}
					if n == 1 {
						out = Outcome{State: StatePending}
					}
					if c.Delivery.Attempts != n-1 {
						errs <- fmt.Errorf("claim %d of %s has %d attempts", n, c.Delivery.ID, c.Delivery.Attempts)
						return
					}
					if err := s.Complete(c.Delivery.ID, &Attempt{Status: 503}, out, t0); err != nil {
						errs <- err
						return
					}
					completions.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range want {
		if claimed[id] != 2 {
			t.Errorf("delivery %s claimed %d times, want twice", id, claimed[id])
		}
	}
	if n := queueDepth(t, s); n != 0 {
		t.Errorf("QueueDepth = %d, want 0", n)
	}
	if n := recordSize(s.leases); n != 0 {
		t.Errorf("no claim running: change record holds %d", n)
	}
}
