package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func testEvent(id, apiKey, trigger string) Event {
	return Event{
		ID:        id,
		Trigger:   trigger,
		APIKey:    apiKey,
		Payload:   []byte(`{"id":"` + id + `"}`),
		CreatedAt: t0,
	}
}

func mustEnqueue(t testing.TB, s *Store, events ...Event) []Delivery {
	t.Helper()
	ds, err := s.Enqueue(events, t0)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return ds
}

func mustComplete(t testing.TB, s *Store, id string, a *Attempt, out Outcome) {
	t.Helper()
	if err := s.Complete(id, a, out, t0); err != nil {
		t.Fatalf("Complete(%s): %v", id, err)
	}
}

func mustClaim(t testing.TB, s *Store, now time.Time, limit int) []Claimed {
	t.Helper()
	cl, err := s.ClaimDue(now, time.Minute, limit, nil)
	if err != nil {
		t.Fatalf("ClaimDue: %v", err)
	}
	return cl
}

func claimedIDs(cl []Claimed) []string {
	ids := []string{}
	for _, c := range cl {
		ids = append(ids, c.Delivery.ID)
	}
	return ids
}

func deliveryIDs(ds []Delivery) []string {
	ids := []string{}
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	return ids
}

func queueDepth(t testing.TB, s *Store) int {
	t.Helper()
	n, err := s.QueueDepth()
	if err != nil {
		t.Fatalf("QueueDepth: %v", err)
	}
	return n
}

func TestDeliveryID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newDeliveryID()
		rest, ok := strings.CutPrefix(id, "msg_")
		if !ok || len(rest) != 26 || strings.ContainsAny(id, "./") || strings.ToLower(rest) != rest {
			t.Fatalf("bad delivery ID %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate delivery ID %q", id)
		}
		seen[id] = true
	}
}

func TestEnqueueFanOut(t *testing.T) {
	hooks := []Webhook{
		testWebhook("late", "k1", t0.Add(time.Hour), "create", "delete"),
		testWebhook("early", "k1", t0, "create"),
		testWebhook("other-key", "k2", t0, "create"),
		func() Webhook {
			w := testWebhook("disabled", "k1", t0, "create")
			w.Enabled = false
			return w
		}(),
	}
	tests := []struct {
		name   string
		events []Event
		want   []string // "event>webhook" in order
	}{
		{"none", nil, nil},
		{"one event fans out in CreatedAt order", []Event{testEvent("e1", "k1", "create")},
			[]string{"e1>early", "e1>late"}},
		{"trigger filters", []Event{testEvent("e1", "k1", "delete")}, []string{"e1>late"}},
		{"unsubscribed trigger", []Event{testEvent("e1", "k1", "update")}, nil},
		{"api key filters", []Event{testEvent("e1", "k2", "create")}, []string{"e1>other-key"}},
		{"unknown api key", []Event{testEvent("e1", "k3", "create")}, nil},
		{"event order kept", []Event{
			testEvent("e1", "k1", "delete"),
			testEvent("e2", "k3", "create"),
			testEvent("e3", "k2", "create"),
			testEvent("e4", "k1", "create"),
		}, []string{"e1>late", "e3>other-key", "e4>early", "e4>late"}},
	}
	for _, b := range backends {
		for _, tt := range tests {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				s := openStore(t, b.opts(t))
				for _, w := range hooks {
					mustCreate(t, s, w)
				}
				ds := mustEnqueue(t, s, tt.events...)
				if ds == nil {
					t.Fatal("Enqueue returned nil")
				}
				var got []string
				for i, d := range ds {
					got = append(got, d.EventID+">"+d.WebhookID)
					if d.State != StatePending || !d.NextAttemptAt.Equal(t0) || !d.CreatedAt.Equal(t0) ||
						!d.UpdatedAt.Equal(t0) || d.Attempts != 0 {
						t.Errorf("delivery %d = %+v, want pending and due at %v", i, d, t0)
					}
					if i > 0 && d.Seq <= ds[i-1].Seq {
						t.Errorf("Seq %d after %d, want increasing", d.Seq, ds[i-1].Seq)
					}
					stored, err := s.GetDelivery(d.ID)
					if err != nil || stored.ID != d.ID || stored.Seq != d.Seq || stored.State != StatePending {
						t.Errorf("GetDelivery(%s) = %+v, %v", d.ID, stored, err)
					}
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("deliveries = %v, want %v", got, tt.want)
				}
				// Events are stored only if delivered.
				for _, ev := range tt.events {
					delivered := slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, ev.ID+">") })
					stored, err := s.GetEvent(ev.ID)
					switch {
					case delivered && err != nil:
						t.Errorf("GetEvent(%s): %v", ev.ID, err)
					case delivered && string(stored.Payload) != string(ev.Payload):
						t.Errorf("GetEvent(%s).Payload = %s, want %s", ev.ID, stored.Payload, ev.Payload)
					case !delivered && !errors.Is(err, ErrNotFound):
						t.Errorf("undelivered event %s: GetEvent error = %v, want ErrNotFound", ev.ID, err)
					}
				}
				if n := queueDepth(t, s); n != len(tt.want) {
					t.Errorf("QueueDepth = %d, want %d", n, len(tt.want))
				}
				// Claiming at the same due time follows derivation order.
				cl := mustClaim(t, s, t0, 100)
				if ids := claimedIDs(cl); !slices.Equal(ids, deliveryIDs(ds)) {
					t.Errorf("ClaimDue order = %v, want %v", ids, deliveryIDs(ds))
				}
			})
		}
	}
}

func TestEnqueueRejectsEmptyEventID(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	if _, err := s.Enqueue([]Event{testEvent("", "k", "create")}, t0); err == nil {
		t.Fatal("Enqueue of an event without ID succeeded")
	}
	if n := queueDepth(t, s); n != 0 {
		t.Errorf("QueueDepth = %d after failed Enqueue, want 0", n)
	}
}

func TestClaimDue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("a", "k", t0, "create"))
		mustCreate(t, s, testWebhook("b", "k", t0.Add(time.Second), "create"))
		// Three events, due at t0, t0+1m and t0+2m (each to a, then b).
		var byTime [][]Delivery
		for i := range 3 {
			ds, err := s.Enqueue([]Event{testEvent(fmt.Sprint("e", i), "k", "create")}, t0.Add(time.Duration(i)*time.Minute))
			if err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
			byTime = append(byTime, ds)
		}
		// Enqueued last but due first.
		early, err := s.Enqueue([]Event{testEvent("early", "k", "create")}, t0.Add(-time.Minute))
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}

		onlyB := func(id string) bool { return id == "b" }
		cl, err := s.ClaimDue(t0.Add(time.Minute), time.Hour, 2, onlyB)
		if err != nil {
			t.Fatalf("ClaimDue: %v", err)
		}
		if want := []string{early[1].ID, byTime[0][1].ID}; !slices.Equal(claimedIDs(cl), want) {
			t.Errorf("ClaimDue(b, limit 2) = %v, want %v", claimedIDs(cl), want)
		}
		for _, c := range cl {
			if c.Webhook == nil || c.Webhook.ID != "b" || c.Webhook.Secret != "whsec_b" {
				t.Errorf("Claimed.Webhook = %+v, want webhook b", c.Webhook)
			}
			if c.Event.ID != c.Delivery.EventID || len(c.Event.Payload) == 0 {
				t.Errorf("Claimed.Event = %+v for delivery of %s", c.Event, c.Delivery.EventID)
			}
			// A leased delivery keeps its place: nothing is written.
			if d, _ := s.GetDelivery(c.Delivery.ID); !d.NextAttemptAt.Equal(c.Delivery.NextAttemptAt) || d.NextAttemptAt.After(t0.Add(time.Minute)) {
				t.Errorf("stored NextAttemptAt = %v, claimed %v", d.NextAttemptAt, c.Delivery.NextAttemptAt)
			}
		}

		// The rest that is due at t0+1m, in order; nothing due later.
		cl = mustClaim(t, s, t0.Add(time.Minute), 100)
		want := []string{early[0].ID, byTime[0][0].ID, byTime[1][0].ID, byTime[1][1].ID}
		if !slices.Equal(claimedIDs(cl), want) {
			t.Errorf("ClaimDue = %v, want %v", claimedIDs(cl), want)
		}
		if cl := mustClaim(t, s, t0.Add(time.Minute), 100); len(cl) != 0 {
			t.Errorf("second ClaimDue = %v, want nothing", claimedIDs(cl))
		}
		if cl := mustClaim(t, s, t0.Add(time.Minute), 0); cl == nil || len(cl) != 0 {
			t.Errorf("ClaimDue(limit 0) = %v, want empty", cl)
		}
		if _, err := s.ClaimDue(t0, 0, 10, nil); err == nil {
			t.Error("ClaimDue with zero lease succeeded")
		}
		if n := queueDepth(t, s); n != 8 {
			t.Errorf("QueueDepth = %d, want 8 (leased deliveries stay queued)", n)
		}
	})
}

func TestClaimDueLeaseExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
		d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
		const lease = 30 * time.Second
		steps := []struct {
			now  time.Time
			want int
		}{
			{t0, 1},
			{t0, 0},
			{t0.Add(lease - time.Nanosecond), 0},
			{t0.Add(lease), 1}, // expired: due again, leased until t0+2*lease
			{t0.Add(2*lease - time.Nanosecond), 0},
			{t0.Add(2 * lease), 1},
		}
		for i, st := range steps {
			cl, err := s.ClaimDue(st.now, lease, 10, nil)
			if err != nil {
				t.Fatalf("step %d: ClaimDue: %v", i, err)
			}
			if len(cl) != st.want {
				t.Fatalf("step %d: ClaimDue at %v returned %d, want %d", i, st.now, len(cl), st.want)
			}
			if len(cl) == 1 {
				if cl[0].Delivery.ID != d.ID || !cl[0].Delivery.NextAttemptAt.Equal(d.NextAttemptAt) {
					t.Errorf("step %d: claimed %+v", i, cl[0].Delivery)
				}
			}
		}
	})
}

// TestClaimDueConcurrent checks that concurrent claimers hand out every
// delivery exactly once while the lease holds.
func TestClaimDueConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("a", "k", t0, "create"))
		mustCreate(t, s, testWebhook("b", "k", t0, "create"))
		const events = 300
		var want []string
		for i := range events {
			ds := mustEnqueue(t, s, testEvent(fmt.Sprint("e", i), "k", "create"))
			want = append(want, deliveryIDs(ds)...)
		}

		const workers = 4
		var (
			mu    sync.Mutex
			count = map[string]int{}
			wg    sync.WaitGroup
			errs  = make(chan error, workers)
		)
		for range workers {
			wg.Go(func() {
				for {
					cl, err := s.ClaimDue(t0, time.Hour, 7, nil)
					if err != nil {
						errs <- err
						return
					}
					if len(cl) == 0 {
						return
					}
					mu.Lock()
					for _, c := range cl {
						count[c.Delivery.ID]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("ClaimDue: %v", err)
		}
		if len(count) != len(want) {
			t.Errorf("claimed %d distinct deliveries, want %d", len(count), len(want))
		}
		for _, id := range want {
			if count[id] != 1 {
				t.Errorf("delivery %s claimed %d times, want once", id, count[id])
			}
		}
		if cl := mustClaim(t, s, t0, 1000); len(cl) != 0 {
			t.Errorf("%d deliveries claimable again within the lease", len(cl))
		}
	})
}

// TestClaimDueRace makes another claimer, and then a Complete, run between
// a ClaimDue's scan and its reads: the other claimer took the webhook's
// first delivery, so this call leaves its later ones alone rather than let
// them overtake it; a delivery of another webhook is still claimed. A
// delivery completed after the scan found it is not handed out.
func TestClaimDueRace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
		ds := mustEnqueue(t, s, testEvent("e1", "k", "create"), testEvent("e2", "k", "create"), testEvent("e3", "k", "create"))
		mustCreate(t, s, testWebhook("wh2", "k2", t0.Add(time.Second), "create"))
		other := mustEnqueue(t, s, testEvent("e4", "k2", "create"))

		var inner []Claimed
		claimHook = func() {
			claimHook = nil
			inner = mustClaim(t, s, t0, 1)
		}
		t.Cleanup(func() { claimHook = nil })
		// The inner claim runs once the outer one has taken its leases:
		// it finds e1 to e3 leased and e4 too, and gets nothing.
		outer := mustClaim(t, s, t0, 10)
		if len(inner) != 0 {
			t.Errorf("inner ClaimDue = %v, want nothing (all leased)", claimedIDs(inner))
		}
		if want := append(deliveryIDs(ds), other[0].ID); !slices.Equal(claimedIDs(outer), want) {
			t.Errorf("outer ClaimDue = %v, want %v", claimedIDs(outer), want)
		}
		for _, c := range outer {
			mustComplete(t, s, c.Delivery.ID, nil, Outcome{State: StatePending, NextAttemptAt: t0})
		}

		// Now the inner claim runs first: it takes e1, the outer call
		// skips wh1 (e2 must not overtake e1) and takes e4.
		claimHook = func() {
			claimHook = nil
			inner = mustClaim(t, s, t0, 1)
		}
		outer = nil
		var err error
		// Scan first, lease after: let the inner claim in between by
		// running it from the accept callback, before the leases.
		outer, err = s.ClaimDue(t0, time.Minute, 10, func(string) bool {
			if claimHook != nil {
				claimHook()
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{ds[0].ID}; !slices.Equal(claimedIDs(inner), want) {
			t.Errorf("inner ClaimDue = %v, want %v", claimedIDs(inner), want)
		}
		if want := []string{other[0].ID}; !slices.Equal(claimedIDs(outer), want) {
			t.Errorf("outer ClaimDue = %v, want %v", claimedIDs(outer), want)
		}
		if n := queueDepth(t, s); n != 4 {
			t.Errorf("QueueDepth = %d, want 4", n)
		}
		if later := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(later), []string{ds[1].ID, ds[2].ID}) {
			t.Errorf("next ClaimDue = %v, want %v", claimedIDs(later), []string{ds[1].ID, ds[2].ID})
		}

		// A delivery completed between the scan and the reads.
		fresh := mustEnqueue(t, s, testEvent("e5", "k2", "create"))
		mustComplete(t, s, other[0].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
		claimHook = func() {
			claimHook = nil
			mustComplete(t, s, fresh[0].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
		}
		if cl := mustClaim(t, s, t0, 10); len(cl) != 0 {
			t.Errorf("ClaimDue of a delivery completed meanwhile = %v", claimedIDs(cl))
		}
	})
}

func TestClaimDueDeletedWebhook(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
		d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
		if err := s.DeleteWebhook("wh1"); err != nil {
			t.Fatalf("DeleteWebhook: %v", err)
		}
		cl := mustClaim(t, s, t0, 10)
		if len(cl) != 1 || cl[0].Delivery.ID != d.ID || cl[0].Webhook != nil {
			t.Fatalf("ClaimDue = %+v, want the delivery with a nil Webhook", cl)
		}
		mustComplete(t, s, d.ID, nil, Outcome{State: StateFailed})
		if n := queueDepth(t, s); n != 0 {
			t.Errorf("QueueDepth = %d, want 0", n)
		}
	})
}

func TestClaimDueMissingEvent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
		ds := mustEnqueue(t, s, testEvent("lost", "k", "create"), testEvent("kept", "k", "create"))
		err := s.DB().Update(func(txn *badger.Txn) error { return txn.Delete(eventKey("lost")) })
		if err != nil {
			t.Fatalf("deleting event: %v", err)
		}
		cl := mustClaim(t, s, t0, 10)
		if ids := claimedIDs(cl); !slices.Equal(ids, []string{ds[1].ID}) {
			t.Errorf("ClaimDue = %v, want only %s", ids, ds[1].ID)
		}
		d, err := s.GetDelivery(ds[0].ID)
		if err != nil {
			t.Fatalf("GetDelivery: %v", err)
		}
		if d.State != StateFailed || d.LastError != eventMissingError {
			t.Errorf("delivery without event: State=%q LastError=%q, want failed", d.State, d.LastError)
		}
		if n := queueDepth(t, s); n != 1 {
			t.Errorf("QueueDepth = %d, want 1", n)
		}
	})
}

func TestComplete(t *testing.T) {
	next := t0.Add(10 * time.Minute)
	tests := []struct {
		name      string
		attempt   *Attempt
		out       Outcome
		wantState string
		wantDepth int
		wantNext  time.Time // NextDue and stored NextAttemptAt when pending
	}{
		{"retry", &Attempt{Status: 503, Error: "HTTP 503"}, Outcome{State: StatePending, NextAttemptAt: next}, StatePending, 1, next},
		{"retry now", &Attempt{Error: "timeout"}, Outcome{State: StatePending}, StatePending, 1, t0},
		{"succeeded", &Attempt{Status: 204}, Outcome{State: StateSucceeded}, StateSucceeded, 0, time.Time{}},
		{"failed", &Attempt{Status: 500, ResponseBody: "oops"}, Outcome{State: StateFailed}, StateFailed, 0, time.Time{}},
		{"failed without attempt", nil, Outcome{State: StateFailed}, StateFailed, 0, time.Time{}},
	}
	for _, b := range backends {
		for _, tt := range tests {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				s := openStore(t, b.opts(t))
				mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
				d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
				if cl := mustClaim(t, s, t0, 10); len(cl) != 1 {
					t.Fatalf("claimed %d, want 1", len(cl))
				}
				mustComplete(t, s, d.ID, tt.attempt, tt.out)

				got, err := s.GetDelivery(d.ID)
				if err != nil {
					t.Fatalf("GetDelivery: %v", err)
				}
				wantAttempts := 0
				if tt.attempt != nil {
					wantAttempts = 1
					if got.LastStatus != tt.attempt.Status || got.LastError != tt.attempt.Error {
						t.Errorf("LastStatus, LastError = %d, %q; want %d, %q",
							got.LastStatus, got.LastError, tt.attempt.Status, tt.attempt.Error)
					}
				}
				if got.State != tt.wantState || got.Attempts != wantAttempts || !got.UpdatedAt.Equal(t0) {
					t.Errorf("delivery = %+v, want state %s, %d attempts", got, tt.wantState, wantAttempts)
				}
				if n := queueDepth(t, s); n != tt.wantDepth {
					t.Errorf("QueueDepth = %d, want %d", n, tt.wantDepth)
				}
				due, ok, err := s.NextDue()
				if err != nil || ok != (tt.wantDepth > 0) || (ok && !due.Equal(tt.wantNext)) {
					t.Errorf("NextDue = %v, %v, %v; want %v, %v", due, ok, err, tt.wantNext, tt.wantDepth > 0)
				}
				if tt.wantState == StatePending && !got.NextAttemptAt.Equal(tt.wantNext) {
					t.Errorf("NextAttemptAt = %v, want %v", got.NextAttemptAt, tt.wantNext)
				}
				// A retry is claimable exactly when due; a finished delivery never.
				if cl := mustClaim(t, s, tt.wantNext.Add(-time.Nanosecond), 10); len(cl) != 0 {
					t.Errorf("claimable before it is due: %v", claimedIDs(cl))
				}
				wantClaim := 0
				if tt.wantState == StatePending {
					wantClaim = 1
				}
				if cl := mustClaim(t, s, t0.Add(time.Hour), 10); len(cl) != wantClaim {
					t.Errorf("claimed %d after Complete, want %d", len(cl), wantClaim)
				}
				attempts, _, err := s.ListAttempts("wh1", "", 0)
				if err != nil || len(attempts) != wantAttempts {
					t.Fatalf("ListAttempts = %v, %v; want %d", attempts, err, wantAttempts)
				}
				if wantAttempts == 1 {
					a := attempts[0]
					if a.DeliveryID != d.ID || a.EventID != "e1" || a.WebhookID != "wh1" || a.Number != 1 ||
						!a.At.Equal(t0) || a.Status != tt.attempt.Status || a.ResponseBody != tt.attempt.ResponseBody {
						t.Errorf("recorded attempt = %+v", a)
					}
				}
			})
		}
	}
}

func TestCompleteErrors(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
	if err := s.Complete("msg_nope", nil, Outcome{State: StateFailed}, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Complete(unknown) error = %v, want ErrNotFound", err)
	}
	if err := s.Complete(d.ID, nil, Outcome{State: "bogus"}, t0); err == nil {
		t.Error("Complete with an invalid state succeeded")
	}
	if n := queueDepth(t, s); n != 1 {
		t.Errorf("QueueDepth = %d, want 1", n)
	}
}

// TestCompleteFinishedDelivery checks that a late result (for example from
// a dispatcher whose lease expired) does not revive a finished delivery.
func TestCompleteFinishedDelivery(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
	mustComplete(t, s, d.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	mustComplete(t, s, d.ID, &Attempt{Status: 500}, Outcome{State: StatePending, NextAttemptAt: t0})
	got, _ := s.GetDelivery(d.ID)
	if got.State != StateSucceeded || got.Attempts != 2 {
		t.Errorf("delivery = %+v, want succeeded with 2 attempts", got)
	}
	if n := queueDepth(t, s); n != 0 {
		t.Errorf("QueueDepth = %d, want 0", n)
	}
}

// TestEventExpiresWithLastDelivery checks that an event shared by several
// deliveries gets the record TTL only once none of them is pending.
func TestEventExpiresWithLastDelivery(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	mustCreate(t, s, testWebhook("b", "k", t0, "create"))
	// "e1/x" shares the prefix "e1/" with event "e1" (which split earlier
	// versions' pending markers, and still splits them when migrated).
	ds := mustEnqueue(t, s, testEvent("e1", "k", "create"), testEvent("e1/x", "k", "create"))
	mustComplete(t, s, ds[0].ID, nil, Outcome{State: StateSucceeded})
	if exp := expiresAt(t, s, eventKey("e1")); exp != 0 {
		t.Errorf("event expires at %d while a delivery is pending", exp)
	}
	mustComplete(t, s, ds[1].ID, nil, Outcome{State: StateFailed})
	if exp := expiresAt(t, s, eventKey("e1")); exp == 0 {
		t.Error("event never expires after its last delivery finished")
	}
	if exp := expiresAt(t, s, eventKey("e1/x")); exp != 0 {
		t.Errorf("event e1/x expires at %d while its deliveries are pending", exp)
	}
}

func TestEnqueueDelivery(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		w := testWebhook("wh1", "k", t0, "create")
		mustCreate(t, s, w)
		orig := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
		mustClaim(t, s, t0, 10)
		mustComplete(t, s, orig.ID, &Attempt{Status: 500}, Outcome{State: StateFailed})
		if exp := expiresAt(t, s, eventKey("e1")); exp == 0 {
			t.Fatal("event of a failed delivery never expires")
		}

		// Redeliver: even to a disabled webhook (kept until it is enabled),
		// with the stored event.
		if err := s.DisableWebhook("wh1", "operator"); err != nil {
			t.Fatalf("DisableWebhook: %v", err)
		}
		ev, err := s.GetEvent(orig.EventID)
		if err != nil {
			t.Fatalf("GetEvent: %v", err)
		}
		now := t0.Add(time.Hour)
		re, err := s.EnqueueDelivery(ev, "wh1", now)
		if err != nil {
			t.Fatalf("EnqueueDelivery: %v", err)
		}
		if re.ID == orig.ID || re.EventID != "e1" || re.WebhookID != "wh1" || re.State != StatePending ||
			!re.NextAttemptAt.Equal(now) || re.Seq <= orig.Seq {
			t.Errorf("redelivery = %+v (original %+v)", re, orig)
		}
		if exp := expiresAt(t, s, eventKey("e1")); exp != 0 {
			t.Errorf("event of a pending redelivery expires at %d", exp)
		}

		// A test event for another trigger, not stored before.
		test := testEvent("test1", "k", "delete")
		td, err := s.EnqueueDelivery(test, "wh1", now)
		if err != nil {
			t.Fatalf("EnqueueDelivery(test event): %v", err)
		}
		// A disabled webhook's deliveries wait, kept, until it is enabled.
		if cl := mustClaim(t, s, now, 10); len(cl) != 0 {
			t.Fatalf("claimed %v from a disabled webhook", claimedIDs(cl))
		}
		if n := queueDepth(t, s); n != 2 {
			t.Errorf("QueueDepth = %d, want 2", n)
		}
		if _, ok, err := s.NextDue(); ok || err != nil {
			t.Errorf("NextDue = %v, %v with only a disabled webhook's deliveries queued", ok, err)
		}
		w.Enabled = true
		if err := s.UpdateWebhook(w); err != nil {
			t.Fatalf("UpdateWebhook: %v", err)
		}
		cl := mustClaim(t, s, now, 10)
		if ids := claimedIDs(cl); !slices.Equal(ids, []string{re.ID, td.ID}) {
			t.Fatalf("ClaimDue = %v, want %v", ids, []string{re.ID, td.ID})
		}
		if string(cl[1].Event.Payload) != string(test.Payload) {
			t.Errorf("test event payload = %s, want %s", cl[1].Event.Payload, test.Payload)
		}

		if _, err := s.EnqueueDelivery(ev, "nope", now); !errors.Is(err, ErrNotFound) {
			t.Errorf("EnqueueDelivery(missing webhook) error = %v, want ErrNotFound", err)
		}
	})
}

func TestNextDue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		if _, ok, err := s.NextDue(); ok || err != nil {
			t.Fatalf("NextDue on empty store = %v, %v; want not ok", ok, err)
		}
		mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
		for _, at := range []time.Time{t0.Add(time.Hour), t0.Add(time.Minute), t0.Add(2 * time.Hour)} {
			if _, err := s.Enqueue([]Event{testEvent(at.String(), "k", "create")}, at); err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
		}
		steps := []struct {
			claimAt time.Time
			want    time.Time
		}{
			{time.Time{}, t0.Add(time.Minute)},
			{t0.Add(time.Minute), t0.Add(2 * time.Minute)},       // the lease
			{t0.Add(90 * time.Second), t0.Add(2 * time.Minute)},  // nothing due
			{t0.Add(time.Hour), t0.Add(time.Hour)},               // expired lease renewed
			{t0.Add(time.Hour), t0.Add(time.Hour + time.Minute)}, // its lease
		}
		for i, st := range steps {
			if !st.claimAt.IsZero() {
				mustClaim(t, s, st.claimAt, 1)
			}
			due, ok, err := s.NextDue()
			if err != nil || !ok || !due.Equal(st.want) {
				t.Errorf("step %d: NextDue = %v, %v, %v; want %v", i, due, ok, err, st.want)
			}
		}
	})
}

// TestPersistence checks that webhooks and pending deliveries survive
// closing and reopening the directory.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, SyncWrites: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	ds := mustEnqueue(t, s, testEvent("e1", "k", "create"), testEvent("e2", "k", "create"), testEvent("e3", "k", "create"))
	if cl := mustClaim(t, s, t0, 1); len(cl) != 1 { // leased until t0+1m
		t.Fatalf("claimed %d, want 1", len(cl))
	}
	mustComplete(t, s, ds[2].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	s = reopen(t, s, dir)
	if n := queueDepth(t, s); n != 2 {
		t.Errorf("QueueDepth after reopen = %d, want 2", n)
	}
	// The lease held when the store closed belonged to a process that no
	// longer delivers it (the directory lock proves it): it is released
	// at open, so the delivery is due at once, still ahead of the next one.
	if cl := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(cl), []string{ds[0].ID, ds[1].ID}) {
		t.Errorf("due after reopen = %v, want %v", claimedIDs(cl), []string{ds[0].ID, ds[1].ID})
	}
	// Leases taken after reopening hold until they end.
	if cl := mustClaim(t, s, t0.Add(30*time.Second), 10); len(cl) != 0 {
		t.Errorf("claimable within the new leases: %v", claimedIDs(cl))
	}
	if cl := mustClaim(t, s, t0.Add(time.Minute), 10); !slices.Equal(claimedIDs(cl), []string{ds[0].ID, ds[1].ID}) {
		t.Errorf("due after the leases = %v, want %v", claimedIDs(cl), []string{ds[0].ID, ds[1].ID})
	}
	if d, err := s.GetDelivery(ds[2].ID); err != nil || d.State != StateSucceeded {
		t.Errorf("finished delivery after reopen = %+v, %v", d, err)
	}
	if attempts, _, err := s.ListAttempts("wh1", "", 0); err != nil || len(attempts) != 1 {
		t.Errorf("ListAttempts after reopen = %v, %v", attempts, err)
	}
	// The webhook index is rebuilt and sequences keep increasing.
	more := mustEnqueue(t, s, testEvent("e4", "k", "create"))
	if len(more) != 1 || more[0].Seq <= ds[2].Seq {
		t.Errorf("Enqueue after reopen = %+v, want one delivery with Seq > %d", more, ds[2].Seq)
	}
}

func BenchmarkEnqueue(b *testing.B) {
	s := openStore(b, Options{Dir: b.TempDir()})
	mustCreate(b, s, testWebhook("wh1", "k", t0, "create"))
	ev := testEvent("", "k", "create")
	ev.Payload = []byte(`{"apiKey":"k","entryId":"0a1b2c3d","trigger":"create","timestamp":"2030-01-02T03:04:05Z"}`)
	events := []Event{ev}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		events[0].ID = fmt.Sprint("evt_", i)
		i++
		ds, err := s.Enqueue(events, t0)
		if err != nil || len(ds) != 1 {
			b.Fatalf("Enqueue = %d deliveries, %v", len(ds), err)
		}
	}
}

// TestEnqueuePartialCommitCorrectsCounts: when Enqueue's writes are split
// over transactions and a later one fails, every event whose value was
// committed counts only its committed deliveries, so that it expires once
// they finish instead of never.
func TestEnqueuePartialCommitCorrectsCounts(t *testing.T) {
	// Two webhooks, two events: the writes are e1, d1, q1, d2, q2, e2, ...
	tests := []struct {
		name        string
		first       int    // writes committed before the failure
		wantQueued  int    // deliveries left queued
		wantPending uint64 // e1's count afterwards
	}{
		{"failure before any delivery of e1", 1, 0, 0},
		{"failure between e1's deliveries", 3, 1, 1},
		{"failure after all of e1", 5, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Options{InMemory: true})
			mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
			mustCreate(t, s, testWebhook("wh2", "k", t0.Add(time.Second), "create"))
			calls := 0
			writeSomeHook = func(left int) (int, error) {
				calls++
				if calls == 1 {
					return tt.first, nil
				}
				return 0, errors.New("disk on fire")
			}
			t.Cleanup(func() { writeSomeHook = nil })
			_, err := s.Enqueue([]Event{testEvent("e1", "k", "create"), testEvent("e2", "k", "create")}, t0)
			writeSomeHook = nil
			if err == nil || !strings.Contains(err.Error(), "disk on fire") {
				t.Fatalf("Enqueue error %v, want the commit's", err)
			}
			if _, err := s.GetEvent("e2"); !errors.Is(err, ErrNotFound) {
				t.Errorf("e2 stored (%v), though none of its writes was committed", err)
			}
			var pending uint64
			err = s.DB().View(func(txn *badger.Txn) error {
				var err error
				_, pending, err = getEvent(txn, "e1")
				return err
			})
			if err != nil || pending != tt.wantPending {
				t.Fatalf("e1 counts %d pending (%v), want %d", pending, err, tt.wantPending)
			}
			if n, err := s.QueueDepth(); err != nil || n != tt.wantQueued {
				t.Errorf("QueueDepth = %d, %v; want %d", n, err, tt.wantQueued)
			}
			// Finishing the committed deliveries lets e1 expire.
			for _, c := range mustClaim(t, s, t0, 10) {
				mustComplete(t, s, c.Delivery.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
			}
			if exp := expiresAt(t, s, eventKey("e1")); exp == 0 {
				t.Error("e1 never expires once its committed deliveries finished")
			}
		})
	}
}

// TestClaimDueSharesOneWebhookCopy: the deliveries of one webhook claimed
// together share one copy of it, which is not the store's own.
func TestClaimDueSharesOneWebhookCopy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("a", "k", t0, "create"))
		mustCreate(t, s, testWebhook("b", "k", t0.Add(time.Second), "create"))
		for i := range 3 {
			mustEnqueue(t, s, testEvent(fmt.Sprint("e", i), "k", "create"))
		}
		cl := mustClaim(t, s, t0.Add(time.Minute), 100)
		if len(cl) != 6 {
			t.Fatalf("claimed %d deliveries, want 6", len(cl))
		}
		copies := map[string]*Webhook{}
		for _, c := range cl {
			w := c.Webhook
			if w == nil || w.ID != c.Delivery.WebhookID {
				t.Fatalf("delivery to %s claimed with webhook %+v", c.Delivery.WebhookID, w)
			}
			if first, ok := copies[w.ID]; ok && first != w {
				t.Errorf("webhook %s: deliveries claimed together got different copies", w.ID)
			}
			copies[w.ID] = w
		}
		copies["a"].Name = "changed"
		copies["a"].Triggers[0] = "changed"
		if got, err := s.GetWebhook("a"); err != nil || got.Name == "changed" || got.Triggers[0] == "changed" {
			t.Errorf("changing the claimed copy changed the store's webhook: %+v, %v", got, err)
		}
	})
}
