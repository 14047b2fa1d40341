package store

import (
	"reflect"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// corrupt overwrites key with bytes that are not JSON, so that any read of
// it fails to decode.
func corrupt(t *testing.T, s *Store, key []byte) {
	t.Helper()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(key, []byte("not json")) }); err != nil {
		t.Fatalf("corrupting %q: %v", key, err)
	}
}

// queueEntries counts the keys under wq/.
func queueEntries(t *testing.T, s *Store) int {
	t.Helper()
	keys, err := s.keysWithPrefix(prefixWebhookQueue, 0)
	if err != nil {
		t.Fatalf("listing queue: %v", err)
	}
	return len(keys)
}

// TestClaimTakesDeliveryFromQueueEntry checks that ClaimDue reads the
// delivery from its queue entry, not from dl/ (a point read per claim).
func TestClaimTakesDeliveryFromQueueEntry(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
	corrupt(t, s, deliveryKey(d.ID))
	cl := mustClaim(t, s, t0, 10)
	if len(cl) != 1 || cl[0].Delivery.ID != d.ID || cl[0].Delivery.EventID != "e1" || !cl[0].Delivery.NextAttemptAt.Equal(d.NextAttemptAt) {
		t.Fatalf("claimed %+v, want delivery %s of e1", cl, d.ID)
	}
	if string(cl[0].Event.Payload) != `{"id":"e1"}` {
		t.Errorf("event payload = %s", cl[0].Event.Payload)
	}
}

// TestClaimReadsEarlierQueueEntries checks that a queue entry written by an
// earlier version, which holds only the delivery ID, is still claimed, with
// the delivery read from dl/, and completed.
func TestClaimReadsEarlierQueueEntries(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
	qk := webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(qk, []byte(d.ID)) }); err != nil {
		t.Fatal(err)
	}
	cl := mustClaim(t, s, t0, 10)
	if len(cl) != 1 || cl[0].Delivery.ID != d.ID || cl[0].Delivery.Seq != d.Seq {
		t.Fatalf("claimed %+v, want delivery %s", cl, d.ID)
	}
	mustComplete(t, s, d.ID, &Attempt{Status: 500}, Outcome{State: StatePending, NextAttemptAt: t0.Add(time.Second)})
	cl = mustClaim(t, s, t0.Add(time.Second), 10)
	if len(cl) != 1 || cl[0].Delivery.Attempts != 1 {
		t.Fatalf("after a retry, claimed %+v, want the delivery with 1 attempt", cl)
	}
}

// TestCompleteUsesWhatClaimRead checks that Complete takes the delivery and
// its event (which counts it as its only pending delivery) from the lease
// instead of reading them again.
func TestCompleteUsesWhatClaimRead(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	ev := testEvent("e1", "k", "create")
	d := mustEnqueue(t, s, ev)[0]
	if cl := mustClaim(t, s, t0, 10); len(cl) != 1 {
		t.Fatalf("claimed %d, want 1", len(cl))
	}
	corrupt(t, s, deliveryKey(d.ID))
	corrupt(t, s, eventKey("e1"))
	mustComplete(t, s, d.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	// The event was rewritten from the lease's copy.
	if got, n, _ := storedEvent(t, s, "e1"); n != 0 || !reflect.DeepEqual(got, ev) {
		t.Errorf("event after its only delivery = %+v with count %d, want %+v with 0", got, n, ev)
	}
	got, err := s.GetDelivery(d.ID)
	if err != nil {
		t.Fatalf("GetDelivery: %v", err)
	}
	if got.State != StateSucceeded || got.Attempts != 1 || got.LastStatus != 200 {
		t.Errorf("delivery = %+v, want succeeded after 1 attempt", got)
	}
	if n := queueEntries(t, s); n != 0 {
		t.Errorf("%d queue entries left, want 0", n)
	}
	if exp := expiresAt(t, s, eventKey("e1")); exp == 0 {
		t.Error("event never expires after its only delivery succeeded")
	}
}

// TestCompleteAfterLeaseTakenOver checks both orders in which two workers
// can complete one delivery when the first one's lease expired and a second
// claim took it: each attempt is counted once, the last outcome of a pending
// delivery wins, a finished one stays finished, and no queue entry is left
// behind or counted twice.
func TestCompleteAfterLeaseTakenOver(t *testing.T) {
	const lease = 30 * time.Second
	tests := []struct {
		name      string
		firstLate bool // the worker whose lease expired completes first
	}{
		{name: "expired holder first", firstLate: true},
		{name: "new holder first", firstLate: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Options{InMemory: true})
			mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
			d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
			for _, at := range []time.Time{t0, t0.Add(lease)} {
				cl, err := s.ClaimDue(at, lease, 10, nil)
				if err != nil || len(cl) != 1 {
					t.Fatalf("ClaimDue at %v: %d claimed, %v", at, len(cl), err)
				}
			}
			late := func() {
				mustComplete(t, s, d.ID, &Attempt{Status: 503}, Outcome{State: StatePending, NextAttemptAt: t0.Add(time.Hour)})
			}
			current := func() {
				mustComplete(t, s, d.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
			}
			if tt.firstLate {
				late()
				current()
			} else {
				current()
				late()
			}
			got, err := s.GetDelivery(d.ID)
			if err != nil {
				t.Fatalf("GetDelivery: %v", err)
			}
			if got.State != StateSucceeded || got.Attempts != 2 {
				t.Errorf("delivery = %+v, want succeeded with 2 attempts", got)
			}
			if n := queueEntries(t, s); n != 0 {
				t.Errorf("%d queue entries left, want 0", n)
			}
			if n := queueDepth(t, s); n != 0 {
				t.Errorf("QueueDepth = %d, want 0", n)
			}
		})
	}
}
