package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestCompleteBatchKeepsItemsApart commits, in one batch, completions of
// two deliveries of one event, a retry, a completion of an unknown delivery
// and a second completion of a delivery finished earlier in the batch:
// each caller gets its own result and the event is released only by the
// last of its deliveries.
func TestCompleteBatchKeepsItemsApart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("a", "k", t0, "create"))
		mustCreate(t, s, testWebhook("b", "k", t0.Add(time.Second), "create"))
		ds := mustEnqueue(t, s, testEvent("e1", "k", "create"), testEvent("e2", "k", "create"))
		if len(ds) != 4 {
			t.Fatalf("enqueued %d deliveries, want 4", len(ds))
		}
		mustClaim(t, s, t0, 10)
		retryAt := t0.Add(time.Hour)
		mk := func(id string, a *Attempt, out Outcome) *completion {
			return &completion{deliveryID: id, attempt: a, out: out, now: t0, done: make(chan error, 1)}
		}
		batch := []*completion{
			mk(ds[0].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded}), // e1 → a
			mk(ds[1].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded}), // e1 → b
			mk(ds[2].ID, &Attempt{Status: 500}, Outcome{State: StatePending, NextAttemptAt: retryAt}),
			mk("msg_unknown", nil, Outcome{State: StateFailed}),
			mk(ds[0].ID, &Attempt{Status: 200}, Outcome{State: StateFailed}),
		}
		for i, c := range batch {
			c.attemptSeq = uint64(i + 1)
		}
		s.completeBatch(batch)
		for i, c := range batch {
			err := <-c.done
			if wantErr := c.deliveryID == "msg_unknown"; (err != nil) != wantErr || (wantErr && !errors.Is(err, ErrNotFound)) {
				t.Errorf("completion %d (%s): %v", i, c.deliveryID, err)
			}
		}
		want := map[string]string{ds[0].ID: StateSucceeded, ds[1].ID: StateSucceeded, ds[2].ID: StatePending, ds[3].ID: StatePending}
		for id, st := range want {
			if d, err := s.GetDelivery(id); err != nil || d.State != st {
				t.Errorf("delivery %s: %v, %v; want %s", id, d.State, err, st)
			}
		}
		if d, _ := s.GetDelivery(ds[0].ID); d.Attempts != 2 {
			t.Errorf("delivery completed twice in the batch has %d attempts, want 2", d.Attempts)
		}
		if exp := expiresAt(t, s, eventKey("e1")); exp == 0 {
			t.Error("event e1 has no TTL after both its deliveries finished")
		}
		if exp := expiresAt(t, s, eventKey("e2")); exp != 0 {
			t.Error("event e2 got a TTL with its deliveries pending")
		}
		checkDepth(t, s, 2)
		if next, ok, err := s.NextDue(); err != nil || !ok || next.After(retryAt) {
			t.Errorf("NextDue = %v, %v, %v; want by %v", next, ok, err, retryAt)
		}
	})
}

// TestCompleteConcurrent completes many claimed deliveries from as many
// goroutines: every one is recorded, and the queue ends empty.
func TestCompleteConcurrent(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir()})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	const n = 300
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = testEvent(fmt.Sprint("e", i), "k", "create")
	}
	ds := mustEnqueue(t, s, evs...)
	if cl := mustClaim(t, s, t0, n); len(cl) != n {
		t.Fatalf("claimed %d, want %d", len(cl), n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, d := range ds {
		wg.Go(func() {
			errs <- s.Complete(d.ID, &Attempt{Status: 204}, Outcome{State: StateSucceeded}, t0)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkDepth(t, s, 0)
	for _, d := range ds {
		if got, err := s.GetDelivery(d.ID); err != nil || got.State != StateSucceeded || got.Attempts != 1 {
			t.Fatalf("delivery %s: %+v, %v", d.ID, got, err)
		}
	}
	if _, ok, err := s.NextDue(); err != nil || ok {
		t.Errorf("NextDue with nothing queued: %v, %v", ok, err)
	}
}

// TestCompleteAfterClose fails cleanly instead of hanging.
func TestCompleteAfterClose(t *testing.T) {
	s, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Complete("msg_x", nil, Outcome{State: StateFailed}, t0) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Complete after Close succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Complete after Close hung")
	}
}

// BenchmarkDeliveryCycle measures the store's share of one delivery: claim
// (in batches of 32, as a busy dispatcher does) and complete (from one
// goroutine per delivery, as attempts do, so completions share commits).
// The backlog is written before the timer starts.
func BenchmarkDeliveryCycle(b *testing.B) {
	s := openStore(b, Options{Dir: b.TempDir()})
	mustCreate(b, s, testWebhook("a", "k", t0, "create"))
	for i := 0; i < b.N; i += 1000 {
		evs := make([]Event, min(1000, b.N-i))
		for j := range evs {
			evs[j] = testEvent(fmt.Sprint("e", i+j), "k", "create")
			evs[j].Payload = []byte(`{"event":"Upload","apiKey":"k","entryIds":["e1"],"metadataKeys":[],"metadataValues":[]}`)
		}
		if _, err := s.Enqueue(evs, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for got := 0; got < b.N; {
		cl, err := s.ClaimDue(t0, time.Minute, 32, nil)
		if err != nil || len(cl) == 0 {
			b.Fatalf("ClaimDue = %d, %v with %d left", len(cl), err, b.N-got)
		}
		done := make(chan error, len(cl))
		for _, c := range cl {
			go func() { done <- s.Complete(c.Delivery.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded}, t0) }()
		}
		for range cl {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		got += len(cl)
	}
}

// BenchmarkClaimBehindInFlight is a claim in a busy concurrent webhook:
// 16 deliveries in flight at the head of its queue, and each finished one
// replaced by the next, claimed alone (the scan walks past the 15 others).
func BenchmarkClaimBehindInFlight(b *testing.B) {
	const inFlight = 16
	s := openStore(b, Options{Dir: b.TempDir()})
	mustCreate(b, s, testWebhook("a", "k", t0, "create"))
	total := b.N + inFlight
	for i := 0; i < total; i += 1000 {
		evs := make([]Event, min(1000, total-i))
		for j := range evs {
			evs[j] = testEvent(fmt.Sprint("e", i+j), "k", "create")
		}
		if _, err := s.Enqueue(evs, t0); err != nil {
			b.Fatal(err)
		}
	}
	window, err := s.ClaimDue(t0, time.Minute, inFlight, nil)
	if err != nil || len(window) != inFlight {
		b.Fatalf("ClaimDue = %d, %v", len(window), err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		oldest := window[i%inFlight]
		if err := s.Complete(oldest.Delivery.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded}, t0); err != nil {
			b.Fatal(err)
		}
		cl, err := s.ClaimDue(t0, time.Minute, 1, nil)
		if err != nil || len(cl) != 1 {
			b.Fatalf("ClaimDue = %d, %v at %d", len(cl), err, i)
		}
		window[i%inFlight] = cl[0]
	}
}
