package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// eventSamples are events of every shape recordSamples has.
func eventSamples() []*Event {
	var evs []*Event
	for _, v := range recordSamples() {
		if ev, ok := v.(*Event); ok {
			evs = append(evs, ev)
		}
	}
	return evs
}

// pendingSamples are counts of every uvarint length class.
var pendingSamples = []uint64{0, 1, 127, 128, 300, math.MaxUint64}

// TestEventValueRoundTrip checks that an event and its count come back
// from a version 2 value, that withPending changes the count alone, and
// that values of earlier versions (binary and JSON) read with a count of 0
// and are converted by withPending.
func TestEventValueRoundTrip(t *testing.T) {
	for _, ev := range eventSamples() {
		v1, _ := encodeRecord(ev)
		js, _ := json.Marshal(ev)
		for _, pending := range pendingSamples {
			v2 := encodeEventValue(ev, pending)
			tests := []struct {
				name        string
				val         []byte
				wantPending uint64
			}{
				{"version 2", v2, pending},
				{"version 1", v1, 0},
				{"JSON", js, 0},
			}
			for _, tt := range tests {
				got, n, err := decodeEventValue(tt.val)
				if err != nil || n != tt.wantPending || !reflect.DeepEqual(&got, ev) {
					t.Fatalf("%s value of %.20q (count %d) decoded to %+v, %d, %v", tt.name, ev.ID, pending, got, n, err)
				}
				if n, err := eventPending(tt.val); err != nil || n != tt.wantPending {
					t.Errorf("eventPending(%s value) = %d, %v; want %d", tt.name, n, err, tt.wantPending)
				}
				re, err := withPending(tt.val, pending+1)
				if err != nil {
					t.Fatalf("withPending(%s value): %v", tt.name, err)
				}
				if re[0] != eventRecordV2 {
					t.Errorf("withPending(%s value) is not version 2: %q", tt.name, re[:1])
				}
				got, n, err = decodeEventValue(re)
				if err != nil || n != pending+1 || !reflect.DeepEqual(&got, ev) {
					t.Errorf("withPending(%s value, %d) decoded to %+v, %d, %v", tt.name, pending+1, got, n, err)
				}
			}
		}
	}
}

// TestEventValueRejectsDamage checks that every truncation of a version 2
// value, and one with bytes after its fields, is rejected, and that
// withPending rejects a value cut short in its count.
func TestEventValueRejectsDamage(t *testing.T) {
	for _, ev := range eventSamples() {
		for _, pending := range []uint64{0, 300, math.MaxUint64} {
			enc := encodeEventValue(ev, pending)
			for n := 1; n < len(enc); n++ {
				if got, p, err := decodeEventValue(enc[:n]); err == nil {
					t.Fatalf("value (count %d) truncated to %d of %d bytes decoded to %+v, %d", pending, n, len(enc), got, p)
				}
			}
			if _, _, err := decodeEventValue(append(enc, 0)); err == nil {
				t.Errorf("value (count %d) with a trailing byte decoded without error", pending)
			}
		}
	}
	for _, val := range [][]byte{
		{eventRecordV2},
		{eventRecordV2, 0x80},
		{eventRecordV2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, // overflows
		[]byte("not json"),
	} {
		if got, err := withPending(val, 1); err == nil {
			t.Errorf("withPending(%q) = %q, want an error", val, got)
		}
		if _, _, err := decodeEventValue(val); err == nil {
			t.Errorf("decodeEventValue(%q) succeeded", val)
		}
	}
}

// storedEvent returns the stored value of an event, decoded, and whether it
// expires.
func storedEvent(t *testing.T, s *Store, id string) (ev Event, pending uint64, expires bool) {
	t.Helper()
	err := s.DB().View(func(txn *badger.Txn) error {
		item, err := txn.Get(eventKey(id))
		if err != nil {
			return err
		}
		expires = item.ExpiresAt() != 0
		return item.Value(func(val []byte) error {
			ev, pending, err = decodeEventValue(val)
			return err
		})
	})
	if err != nil {
		t.Fatalf("reading event %s: %v", id, err)
	}
	return ev, pending, expires
}

// checkEvent fails unless the event's stored count is want, with the
// record TTL exactly when it is 0.
func checkEvent(t *testing.T, s *Store, id string, want uint64) {
	t.Helper()
	_, n, expires := storedEvent(t, s, id)
	if n != want || expires != (want == 0) {
		t.Errorf("event %s: count %d, expires %v; want count %d, expires %v", id, n, expires, want, want == 0)
	}
}

// completeTogether commits completions of the deliveries in one batch, as
// the completer does with Complete calls that wait together.
func completeTogether(t *testing.T, s *Store, out Outcome, ids ...string) {
	t.Helper()
	batch := make([]*completion, len(ids))
	for i, id := range ids {
		seq, err := s.attemptSeq.Next()
		if err != nil {
			t.Fatal(err)
		}
		batch[i] = &completion{deliveryID: id, attempt: &Attempt{Status: 200}, attemptSeq: seq, out: out, now: t0, done: make(chan error, 1)}
	}
	s.completeBatch(batch)
	for _, c := range batch {
		if err := <-c.done; err != nil {
			t.Fatalf("completing %s: %v", c.deliveryID, err)
		}
	}
}

// TestEventCountFollowsDeliveries finishes the three deliveries of one
// event in batches of every grouping, with deliveries leased or not: the
// count goes down by one per finished delivery, and the event gets its TTL
// when, and only when, it reaches 0.
func TestEventCountFollowsDeliveries(t *testing.T) {
	groupings := []struct {
		name    string
		batches [][]int // indexes of the deliveries finished together
	}{
		{"one by one", [][]int{{0}, {1}, {2}}},
		{"all together", [][]int{{0, 1, 2}}},
		{"two then one", [][]int{{0, 1}, {2}}},
		{"one then two", [][]int{{2}, {0, 1}}},
	}
	leasing := []struct {
		name string
		// upFront leases every delivery before the first batch (each
		// lease keeps a count of 3); perBatch leases the deliveries of
		// each batch just before it (the last one keeps the count it
		// will lower, so with a count of 1 it is used).
		upFront, perBatch bool
	}{
		{name: "not leased"},
		{name: "leased up front", upFront: true},
		{name: "leased before each batch", perBatch: true},
	}
	for _, g := range groupings {
		for _, l := range leasing {
			t.Run(g.name+"/"+l.name, func(t *testing.T) {
				s := openStore(t, Options{InMemory: true})
				hooks := []string{"a", "b", "c"}
				for i, id := range hooks {
					mustCreate(t, s, testWebhook(id, "k", t0.Add(time.Duration(i)*time.Second), "create"))
				}
				ds := mustEnqueue(t, s, testEvent("e1", "k", "create"))
				if len(ds) != 3 {
					t.Fatalf("enqueued %d deliveries, want 3", len(ds))
				}
				checkEvent(t, s, "e1", 3)
				if l.upFront {
					if cl := mustClaim(t, s, t0, 10); len(cl) != 3 {
						t.Fatalf("claimed %d, want 3", len(cl))
					}
				}
				left := uint64(3)
				for _, b := range g.batches {
					var ids []string
					in := map[string]bool{}
					for _, i := range b {
						ids = append(ids, ds[i].ID)
						in[ds[i].WebhookID] = true
					}
					if l.perBatch {
						cl, err := s.ClaimDue(t0, time.Minute, 10, func(id string) bool { return in[id] })
						if err != nil || !slices.Equal(claimedIDs(cl), ids) {
							t.Fatalf("ClaimDue = %v, %v; want %v", claimedIDs(cl), err, ids)
						}
					}
					completeTogether(t, s, Outcome{State: StateSucceeded}, ids...)
					left -= uint64(len(b))
					checkEvent(t, s, "e1", left)
				}
				checkDepth(t, s, 0)
			})
		}
	}
}

// TestRedeliveryWhileInFlight adds a delivery to an event whose only
// pending delivery is leased, after or while the claim reads the event:
// the claimed delivery finishing must not give the event its TTL, whatever
// count the lease kept (it must not be used: see leases.eventChanged).
func TestRedeliveryWhileInFlight(t *testing.T) {
	tests := []struct {
		name        string
		duringClaim bool // EnqueueDelivery runs once the claim took its lease, before it reads
	}{
		{name: "after the claim read the event"},
		{name: "while the claim reads", duringClaim: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Options{InMemory: true})
			mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
			ev := testEvent("e1", "k", "create")
			d := mustEnqueue(t, s, ev)[0]
			var re Delivery
			redeliver := func() {
				var err error
				if re, err = s.EnqueueDelivery(ev, "wh1", t0); err != nil {
					t.Errorf("EnqueueDelivery: %v", err)
				}
			}
			if tt.duringClaim {
				claimHook = func() {
					claimHook = nil
					redeliver()
				}
				t.Cleanup(func() { claimHook = nil })
			}
			if cl := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(cl), []string{d.ID}) {
				t.Fatalf("claimed %v, want %s", claimedIDs(cl), d.ID)
			}
			if !tt.duringClaim {
				redeliver()
			}
			checkEvent(t, s, "e1", 2)
			mustComplete(t, s, d.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
			checkEvent(t, s, "e1", 1)

			if cl := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(cl), []string{re.ID}) {
				t.Fatalf("claimed %v, want the redelivery %s", claimedIDs(cl), re.ID)
			}
			mustComplete(t, s, re.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
			checkEvent(t, s, "e1", 0)
		})
	}
}

// TestRedeliveryOfExpiringEvent checks that EnqueueDelivery of an event
// whose deliveries all finished counts the new one and removes the TTL.
func TestRedeliveryOfExpiringEvent(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	ev := testEvent("e1", "k", "create")
	d := mustEnqueue(t, s, ev)[0]
	mustComplete(t, s, d.ID, &Attempt{Status: 500}, Outcome{State: StateFailed})
	checkEvent(t, s, "e1", 0)
	re, err := s.EnqueueDelivery(ev, "wh1", t0)
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, s, "e1", 1)
	mustComplete(t, s, re.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	checkEvent(t, s, "e1", 0)
}

// TestRetryKeepsEventCount checks that a completion that leaves the
// delivery pending changes neither the event's count nor its TTL, whether
// or not the lease's copy of the event is used (one webhook: a count of 1).
func TestRetryKeepsEventCount(t *testing.T) {
	for _, hooks := range []int{1, 2} {
		t.Run(fmt.Sprint(hooks, " webhooks"), func(t *testing.T) {
			s := openStore(t, Options{InMemory: true})
			for i := range hooks {
				mustCreate(t, s, testWebhook(fmt.Sprint("wh", i), "k", t0.Add(time.Duration(i)*time.Second), "create"))
			}
			ds := mustEnqueue(t, s, testEvent("e1", "k", "create"))
			mustClaim(t, s, t0, 10)
			mustComplete(t, s, ds[0].ID, &Attempt{Status: 503}, Outcome{State: StatePending, NextAttemptAt: t0})
			checkEvent(t, s, "e1", uint64(hooks))
			// Retried and finished in one batch: counted once.
			mustClaim(t, s, t0, 10)
			completeTogether(t, s, Outcome{State: StatePending}, ds[0].ID)
			checkEvent(t, s, "e1", uint64(hooks))
			mustClaim(t, s, t0, 10)
			batch := []*completion{
				{deliveryID: ds[0].ID, out: Outcome{State: StatePending}, now: t0, done: make(chan error, 1)},
				{deliveryID: ds[0].ID, out: Outcome{State: StateSucceeded}, now: t0, done: make(chan error, 1)},
				{deliveryID: ds[0].ID, out: Outcome{State: StateFailed}, now: t0, done: make(chan error, 1)},
			}
			s.completeBatch(batch)
			for _, c := range batch {
				if err := <-c.done; err != nil {
					t.Fatal(err)
				}
			}
			checkEvent(t, s, "e1", uint64(hooks-1))
		})
	}
}

// TestCompleteWithoutEvent checks that finishing a delivery whose event is
// gone succeeds and leaves the event gone.
func TestCompleteWithoutEvent(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	mustCreate(t, s, testWebhook("b", "k", t0.Add(time.Second), "create"))
	ds := mustEnqueue(t, s, testEvent("e1", "k", "create"))
	mustClaim(t, s, t0, 10)
	if err := s.DB().Update(func(txn *badger.Txn) error { return txn.Delete(eventKey("e1")) }); err != nil {
		t.Fatal(err)
	}
	completeTogether(t, s, Outcome{State: StateSucceeded}, ds[0].ID)
	mustComplete(t, s, ds[1].ID, nil, Outcome{State: StateFailed})
	if _, err := s.GetEvent("e1"); err == nil {
		t.Error("event deleted before its deliveries finished came back")
	}
	for _, d := range ds {
		if got, err := s.GetDelivery(d.ID); err != nil || got.State == StatePending {
			t.Errorf("delivery %s: %+v, %v; want finished", d.ID, got, err)
		}
	}
	checkDepth(t, s, 0)
}

// TestEnqueueCountsRepeatedEventID checks that an event ID given twice to
// one Enqueue counts the deliveries of both.
func TestEnqueueCountsRepeatedEventID(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	mustCreate(t, s, testWebhook("b", "k", t0.Add(time.Second), "create", "delete"))
	second := testEvent("e1", "k", "delete")
	ds := mustEnqueue(t, s, testEvent("e1", "k", "create"), second)
	if len(ds) != 3 {
		t.Fatalf("enqueued %d deliveries, want 3", len(ds))
	}
	if ev, n, _ := storedEvent(t, s, "e1"); n != 3 || ev.Trigger != second.Trigger {
		t.Errorf("stored event %+v with count %d, want the second one with 3", ev, n)
	}
}

// legacyMarkerKey is the key of an earlier version's marker of a pending
// delivery of an event.
func legacyMarkerKey(eventID, deliveryID string) []byte {
	return []byte(prefixEventPending + eventID + "/" + deliveryID)
}

// TestMigrateEventMarkers opens a store in an earlier version's layout
// (events as binary or JSON records, a marker per pending delivery), also
// as a migration cut short by a crash left it: no marker is left, every
// event counts its pending deliveries, and gets its TTL with the last one.
// Event "a/b" contains '/', and its markers share the prefix of event "a".
func TestMigrateEventMarkers(t *testing.T) {
	tests := []struct {
		name        string
		interrupted bool // "a/b" counted its first marker, which is gone
	}{
		{name: "fresh"},
		{name: "interrupted", interrupted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
			mustCreate(t, s, testWebhook("wh2", "k", t0.Add(time.Second), "create"))
			evAB, evA, done := testEvent("a/b", "k", "create"), testEvent("a", "k", "create"), testEvent("done", "k", "create")
			ds := mustEnqueue(t, s, evAB, evA)
			if len(ds) != 4 {
				t.Fatalf("enqueued %d deliveries, want 4", len(ds))
			}
			v1AB, _ := encodeRecord(&evAB)
			jsonA, _ := json.Marshal(&evA)
			v1Done, _ := encodeRecord(&done)
			err = s.DB().Update(func(txn *badger.Txn) error {
				sets := []struct{ key, val []byte }{
					{eventKey("a/b"), v1AB},
					{eventKey("a"), jsonA},
					{eventKey("done"), v1Done}, // no pending delivery
					{legacyMarkerKey("a/b", ds[1].ID), nil},
					{legacyMarkerKey("a", ds[2].ID), nil},
					{legacyMarkerKey("a", ds[3].ID), nil},
				}
				if tt.interrupted {
					sets[0].val = encodeEventValue(&evAB, 1)
				} else {
					sets = append(sets, struct{ key, val []byte }{legacyMarkerKey("a/b", ds[0].ID), nil})
				}
				for _, e := range sets {
					if err := txn.Set(e.key, e.val); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			s = reopen(t, s, dir)
			if left, err := s.keysWithPrefix(prefixEventPending, 0); err != nil || len(left) != 0 {
				t.Errorf("markers left after open: %q, %v", left, err)
			}
			for _, want := range []*Event{&evAB, &evA} {
				if got, _, _ := storedEvent(t, s, want.ID); !reflect.DeepEqual(&got, want) {
					t.Errorf("event %s = %+v, want %+v", want.ID, got, want)
				}
				checkEvent(t, s, want.ID, 2)
			}
			err = s.DB().View(func(txn *badger.Txn) error {
				val, err := getRaw(txn, eventKey("done"), "event done")
				if err == nil && !bytes.Equal(val, v1Done) {
					t.Errorf("event without markers rewritten: %q", val)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}

			if cl := mustClaim(t, s, t0, 10); len(cl) != 4 {
				t.Fatalf("claimed %d, want 4", len(cl))
			}
			mustComplete(t, s, ds[0].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
			checkEvent(t, s, "a/b", 1)
			checkEvent(t, s, "a", 2)
			mustComplete(t, s, ds[1].ID, &Attempt{Status: 410}, Outcome{State: StateFailed})
			checkEvent(t, s, "a/b", 0)
			checkEvent(t, s, "a", 2)
		})
	}
}

// TestMigrateEventMarkersInBatches migrates more markers than one
// transaction takes, for one event and around it, with markers of a
// missing event and one without event ID, and events too big to be
// rewritten together in one transaction: each event's count is its number
// of markers, and no marker is left.
func TestMigrateEventMarkersInBatches(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"big": 2*maxMarkerBatch + 7, "big/": 3, "bi": 1, "c": maxMarkerBatch}
	// Values below Badger's value threshold (1 MiB) count whole towards
	// its transaction limit (a few MiB with this store's memtables).
	const huge = 8
	for i := range huge {
		want[fmt.Sprint("huge", i)] = 1
	}
	wb := s.DB().NewWriteBatch()
	for id, n := range want {
		ev := testEvent(id, "k", "create")
		if strings.HasPrefix(id, "huge") {
			ev.Payload = bytes.Repeat([]byte("x"), 900<<10)
		}
		val, _ := encodeRecord(&ev)
		if err := wb.Set(eventKey(id), val); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := wb.Set(legacyMarkerKey(id, fmt.Sprintf("msg_%07d", i)), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range [][]byte{legacyMarkerKey("gone", "msg_1"), []byte(prefixEventPending + "msg_2")} {
		if err := wb.Set(k, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir)
	if left, err := s.keysWithPrefix(prefixEventPending, 0); err != nil || len(left) != 0 {
		t.Errorf("%d markers left after open (%v)", len(left), err)
	}
	for id, n := range want {
		checkEvent(t, s, id, uint64(n))
	}
	if _, err := s.GetEvent("gone"); err == nil {
		t.Error("markers of a missing event made it")
	}
}

// TestEventCountNeverNegative finishes a delivery of an event whose count
// is already 0 (as an event of an earlier version without markers reads):
// the count stays 0 and the event gets its TTL.
func TestEventCountNeverNegative(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	mustCreate(t, s, testWebhook("b", "k", t0.Add(time.Second), "create"))
	ev := testEvent("e1", "k", "create")
	ds := mustEnqueue(t, s, ev)
	v1, _ := encodeRecord(&ev)
	if err := s.DB().Update(func(txn *badger.Txn) error { return txn.Set(eventKey("e1"), v1) }); err != nil {
		t.Fatal(err)
	}
	completeTogether(t, s, Outcome{State: StateSucceeded}, ds[0].ID, ds[1].ID)
	checkEvent(t, s, "e1", 0)
}
