package store

import (
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func mustEnqueueFresh(t testing.TB, s *Store, at time.Time, events ...Event) []Fresh {
	t.Helper()
	fresh, err := s.EnqueueFresh(events, at)
	if err != nil {
		t.Fatalf("EnqueueFresh: %v", err)
	}
	return fresh
}

// storedPending returns the pending count in the stored value of an event.
func storedPending(t testing.TB, s *Store, eventID string) uint64 {
	t.Helper()
	var n uint64
	err := s.db.View(func(txn *badger.Txn) error {
		val, err := getRaw(txn, eventKey(eventID), "event "+eventID)
		if err != nil {
			return err
		}
		n, err = eventPending(val)
		return err
	})
	if err != nil {
		t.Fatalf("reading event %s: %v", eventID, err)
	}
	return n
}

func TestHandoffTakesFreshDeliveries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("a", "k", t0, "create"))
		mustCreate(t, s, testWebhook("b", "k", t0.Add(time.Second), "create"))
		fresh := mustEnqueueFresh(t, s, t0, testEvent("e1", "k", "create"))
		if len(fresh) != 2 {
			t.Fatalf("EnqueueFresh made %d deliveries, want 2", len(fresh))
		}
		cl := s.Handoff(fresh, t0, time.Minute, nil)
		if want := []string{fresh[0].Delivery.ID, fresh[1].Delivery.ID}; !slices.Equal(claimedIDs(cl), want) {
			t.Fatalf("Handoff = %v, want %v", claimedIDs(cl), want)
		}
		for i, c := range cl {
			if c.Webhook == nil || c.Webhook.ID != c.Delivery.WebhookID || c.Webhook.Secret != "whsec_"+c.Delivery.WebhookID {
				t.Errorf("claimed[%d].Webhook = %+v", i, c.Webhook)
			}
			if c.Event.ID != "e1" || string(c.Event.Payload) != `{"id":"e1"}` {
				t.Errorf("claimed[%d].Event = %+v", i, c.Event)
			}
		}
		// Leased: ClaimDue does not hand them out again, and they stay
		// queued until completed.
		if again := mustClaim(t, s, t0, 10); len(again) != 0 {
			t.Errorf("ClaimDue after Handoff = %v, want nothing", claimedIDs(again))
		}
		checkDepth(t, s, 2)
		mustComplete(t, s, cl[0].Delivery.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
		if n := storedPending(t, s, "e1"); n != 1 {
			t.Errorf("event count after one of two deliveries = %d, want 1", n)
		}
		mustComplete(t, s, cl[1].Delivery.ID, &Attempt{Status: 500}, Outcome{State: StatePending, NextAttemptAt: t0.Add(time.Minute)})
		checkDepth(t, s, 1)
		// The retry is claimed as usual, with the event read from the store.
		retry := mustClaim(t, s, t0.Add(time.Minute), 10)
		if len(retry) != 1 || retry[0].Delivery.ID != cl[1].Delivery.ID || retry[0].Delivery.Attempts != 1 {
			t.Fatalf("ClaimDue of the retry = %+v", retry)
		}
		mustComplete(t, s, retry[0].Delivery.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
		checkDepth(t, s, 0)
		if n := storedPending(t, s, "e1"); n != 0 {
			t.Errorf("event count after both deliveries = %d, want 0", n)
		}
		if exp := expiresAt(t, s, eventKey("e1")); exp == 0 {
			t.Error("event without TTL after its last delivery finished")
		}
	})
}

// TestHandoffKeepsQueueOrder checks that Handoff never lets a fresh
// delivery start ahead of one queued before it that is not in flight.
func TestHandoffKeepsQueueOrder(t *testing.T) {
	tests := []struct {
		name string
		// ahead puts something in webhook a's queue before the fresh
		// delivery is enqueued, and returns when Handoff runs.
		ahead func(t *testing.T, s *Store) time.Time
		// before runs between the enqueue and Handoff, if set.
		before func(t *testing.T, s *Store)
		// accept is Handoff's accept (nil: all).
		accept func(string) bool
		want   bool
		// freshFirst: what is queued is due after the fresh delivery, so
		// ClaimDue hands the fresh one out first (Handoff refuses it
		// anyway: it does not look at due times).
		freshFirst bool
	}{
		{
			name:  "empty queue",
			ahead: func(*testing.T, *Store) time.Time { return t0 },
			want:  true,
		},
		{
			name: "an earlier delivery in flight",
			ahead: func(t *testing.T, s *Store) time.Time {
				mustEnqueue(t, s, testEvent("old", "k", "create"))
				if cl := mustClaim(t, s, t0, 10); len(cl) != 1 {
					t.Fatalf("ClaimDue = %v", claimedIDs(cl))
				}
				return t0
			},
			want: true,
		},
		{
			name: "an earlier delivery due, not claimed",
			ahead: func(t *testing.T, s *Store) time.Time {
				mustEnqueue(t, s, testEvent("old", "k", "create"))
				return t0
			},
		},
		{
			name: "an earlier delivery whose lease expired",
			ahead: func(t *testing.T, s *Store) time.Time {
				mustEnqueue(t, s, testEvent("old", "k", "create"))
				if cl := mustClaim(t, s, t0, 10); len(cl) != 1 {
					t.Fatalf("ClaimDue = %v", claimedIDs(cl))
				}
				return t0.Add(2 * time.Minute) // mustClaim leases for a minute
			},
		},
		{
			name: "a retry scheduled later",
			ahead: func(t *testing.T, s *Store) time.Time {
				d := mustEnqueue(t, s, testEvent("old", "k", "create"))[0]
				mustClaim(t, s, t0, 10)
				mustComplete(t, s, d.ID, &Attempt{Status: 500}, Outcome{State: StatePending, NextAttemptAt: t0.Add(time.Hour)})
				return t0
			},
			freshFirst: true,
		},
		{
			name: "a delivery put back ahead",
			ahead: func(t *testing.T, s *Store) time.Time {
				d := mustEnqueue(t, s, testEvent("old", "k", "create"))[0]
				mustClaim(t, s, t0, 10)
				mustComplete(t, s, d.ID, nil, Outcome{State: StatePending, NextAttemptAt: t0})
				return t0
			},
		},
		{
			name:   "turned down by accept",
			ahead:  func(*testing.T, *Store) time.Time { return t0 },
			accept: func(string) bool { return false },
		},
		{
			name:  "webhook disabled",
			ahead: func(*testing.T, *Store) time.Time { return t0 },
			before: func(t *testing.T, s *Store) {
				if err := s.DisableWebhook("a", "test"); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, s *Store) {
				mustCreate(t, s, testWebhook("a", "k", t0, "create"))
				now := tt.ahead(t, s)
				fresh := mustEnqueueFresh(t, s, t0, testEvent("new", "k", "create"))
				if tt.before != nil {
					tt.before(t, s)
				}
				cl := s.Handoff(fresh, now, time.Minute, tt.accept)
				if got := len(cl) == 1; got != tt.want {
					t.Fatalf("Handoff took %v, want taken %v", claimedIDs(cl), tt.want)
				}
				if tt.want || tt.before != nil {
					return
				}
				// Left queued, behind what was ahead of it.
				cl = mustClaim(t, s, now.Add(time.Hour), 10)
				ids := claimedIDs(cl)
				at := len(ids) - 1
				if tt.freshFirst {
					at = 0
				}
				if at < 0 || ids[at] != fresh[0].Delivery.ID {
					t.Errorf("ClaimDue after a refused Handoff = %v, want the fresh delivery %s at %d", ids, fresh[0].Delivery.ID, at)
				}
			})
		})
	}
}

func TestHandoffTakesInOrderUntilRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("a", "k", t0, "create"))
		fresh := mustEnqueueFresh(t, s, t0,
			testEvent("e1", "k", "create"), testEvent("e2", "k", "create"), testEvent("e3", "k", "create"))
		n := 0
		two := func(string) bool { n++; return n <= 2 }
		cl := s.Handoff(fresh, t0, time.Minute, two)
		if want := []string{fresh[0].Delivery.ID, fresh[1].Delivery.ID}; !slices.Equal(claimedIDs(cl), want) {
			t.Fatalf("Handoff = %v, want the first two %v", claimedIDs(cl), want)
		}
		if n != 3 {
			t.Errorf("accept asked %d times, want 3 (stopping at its first no)", n)
		}
		// The third stays for ClaimDue; once it is claimed, a new fresh
		// delivery may be handed off behind it.
		if rest := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(rest), []string{fresh[2].Delivery.ID}) {
			t.Errorf("ClaimDue = %v, want %s", claimedIDs(rest), fresh[2].Delivery.ID)
		}
		more := mustEnqueueFresh(t, s, t0, testEvent("e4", "k", "create"))
		if cl := s.Handoff(more, t0, time.Minute, nil); len(cl) != 1 {
			t.Errorf("Handoff behind three in flight = %v, want it taken", claimedIDs(cl))
		}
	})
}

func TestHandoffLeavesWhatClaimDueTook(t *testing.T) {
	tests := []struct {
		name string
		// after runs once ClaimDue has leased the fresh delivery.
		after func(t *testing.T, s *Store, id string)
	}{
		{name: "still leased", after: func(*testing.T, *Store, string) {}},
		{
			// Delivered and gone from the queue, with a later delivery
			// queued and not leased: counting alone would take the
			// fresh one again (twice delivered) ahead of that one.
			name: "delivered, another queued",
			after: func(t *testing.T, s *Store, id string) {
				mustComplete(t, s, id, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
				mustEnqueue(t, s, testEvent("e2", "k", "create"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, s *Store) {
				mustCreate(t, s, testWebhook("a", "k", t0, "create"))
				fresh := mustEnqueueFresh(t, s, t0, testEvent("e1", "k", "create"))
				if cl := mustClaim(t, s, t0, 10); len(cl) != 1 {
					t.Fatalf("ClaimDue = %v", claimedIDs(cl))
				}
				tt.after(t, s, fresh[0].Delivery.ID)
				if cl := s.Handoff(fresh, t0, time.Minute, nil); len(cl) != 0 {
					t.Errorf("Handoff of a delivery ClaimDue leased = %v, want nothing", claimedIDs(cl))
				}
			})
		})
	}
}

func TestHandoffOffersOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("a", "k", t0, "create"))
		fresh := mustEnqueueFresh(t, s, t0, testEvent("e1", "k", "create"))
		s.Release(fresh)
		if cl := s.Handoff(fresh, t0, time.Minute, nil); len(cl) != 0 {
			t.Errorf("Handoff after Release = %v, want nothing", claimedIDs(cl))
		}
		more := mustEnqueueFresh(t, s, t0, testEvent("e2", "k", "create"))
		if cl := mustClaim(t, s, t0, 10); len(cl) != 2 {
			t.Fatalf("ClaimDue = %v, want both", claimedIDs(cl))
		}
		mustComplete(t, s, fresh[0].Delivery.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
		mustComplete(t, s, more[0].Delivery.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
		if cl := s.Handoff(more, t0, time.Minute, nil); len(cl) != 0 {
			t.Errorf("Handoff of a delivery already delivered = %v, want nothing", claimedIDs(cl))
		}
		s.leases.mu.Lock()
		left := len(s.leases.fresh)
		s.leases.mu.Unlock()
		if left != 0 {
			t.Errorf("%d fresh marks left, want none", left)
		}
	})
}

// TestHandoffAfterReopen checks that the per-webhook counts Handoff relies
// on are rebuilt when the store opens.
func TestHandoffAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	old := mustEnqueue(t, s, testEvent("old", "k", "create"))
	s = reopen(t, s, dir)
	fresh := mustEnqueueFresh(t, s, t0, testEvent("new", "k", "create"))
	if cl := s.Handoff(fresh, t0, time.Minute, nil); len(cl) != 0 {
		t.Fatalf("Handoff with an older delivery queued before the reopen = %v, want nothing", claimedIDs(cl))
	}
	if cl := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(cl), []string{old[0].ID, fresh[0].Delivery.ID}) {
		t.Errorf("ClaimDue = %v, want the old delivery, then the new", claimedIDs(cl))
	}
	checkDepth(t, s, 2)
}

// TestHandoffStaleEventCopy checks that a delivery added to a fresh event
// between its Enqueue and its Handoff is still counted: the lease's copy
// of the event is not used.
func TestHandoffStaleEventCopy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("a", "k", t0, "create"))
		ev := testEvent("e1", "k", "create")
		fresh := mustEnqueueFresh(t, s, t0, ev)
		if _, err := s.EnqueueDelivery(ev, "a", t0); err != nil {
			t.Fatalf("EnqueueDelivery: %v", err)
		}
		// The redelivery is queued, not leased: the count refuses the
		// hand-off.
		if cl := s.Handoff(fresh, t0, time.Minute, nil); len(cl) != 0 {
			t.Fatalf("Handoff with a delivery queued and not leased = %v, want nothing", claimedIDs(cl))
		}
		// Take that safeguard away, to check that the lease's copy of
		// the event, from before the redelivery, is not used.
		s.leases.mu.Lock()
		s.leases.queued["a"] = 1 // as if only the fresh delivery were queued
		s.leases.fresh[fresh[0].Delivery.ID] = struct{}{}
		s.leases.mu.Unlock()
		cl := s.Handoff(fresh, t0, time.Minute, nil)
		s.leases.count(queueDelta{"a": 1})
		if len(cl) != 1 {
			t.Fatalf("Handoff = %v, want the fresh delivery", claimedIDs(cl))
		}
		mustComplete(t, s, cl[0].Delivery.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
		if n := storedPending(t, s, "e1"); n != 1 {
			t.Errorf("event count = %d, want 1 (the redelivery is still pending)", n)
		}
		checkDepth(t, s, 1)
	})
}
