package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// checkDepth compares QueueDepth, kept in memory, with a count of the
// queue.
func checkDepth(t testing.TB, s *Store, want int) {
	t.Helper()
	n, err := s.countQueue()
	if err != nil {
		t.Fatalf("countQueue: %v", err)
	}
	if got := queueDepth(t, s); got != want || int(n.total()) != want {
		t.Errorf("QueueDepth = %d, queue holds %d, want %d", got, n.total(), want)
	}
	// Handoff's per-webhook counts (leases.queued) follow the queues too.
	s.leases.mu.Lock()
	counted := maps.Clone(s.leases.queued)
	s.leases.mu.Unlock()
	for wh, c := range n {
		if c == 0 {
			delete(n, wh)
		}
	}
	if !maps.Equal(map[string]int64(n), counted) {
		t.Errorf("queue entries counted by webhook %v, queues hold %v", counted, n)
	}
}

// enqueueN enqueues n events of apiKey in one call.
func enqueueN(t testing.TB, s *Store, apiKey string, n int, at time.Time) []Delivery {
	t.Helper()
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = testEvent(fmt.Sprintf("%s-%d", apiKey, i), apiKey, "create")
	}
	ds, err := s.Enqueue(evs, at)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return ds
}

func TestHoldKeepsDeliveriesQueued(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("held", "k1", t0, "create"))
		mustCreate(t, s, testWebhook("free", "k2", t0, "create"))
		held := enqueueN(t, s, "k1", 3, t0)
		free := enqueueN(t, s, "k2", 2, t0)
		until := t0.Add(time.Minute)
		if err := s.SetHealth("held", Health{Breaker: BreakerOpen, HoldUntil: until, Pause: time.Minute}); err != nil {
			t.Fatalf("SetHealth: %v", err)
		}
		if h := s.Health("held"); h.Breaker != BreakerOpen || !h.HoldUntil.Equal(until) {
			t.Errorf("Health = %+v", h)
		}

		if cl := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(cl), deliveryIDs(free)) {
			t.Errorf("ClaimDue = %v, want only %v", claimedIDs(cl), deliveryIDs(free))
		}
		// Next due: the other webhook's leases (t0+1m) and the hold end.
		if due, ok, err := s.NextDue(); err != nil || !ok || !due.Equal(until) {
			t.Errorf("NextDue = %v, %v, %v; want %v", due, ok, err, until)
		}
		if cl := mustClaim(t, s, until.Add(-time.Nanosecond), 10); len(cl) != 0 {
			t.Errorf("claimed %v during the hold", claimedIDs(cl))
		}
		// The hold has ended: the held deliveries come out in order (with
		// the other webhook's expired leases).
		cl, err := s.ClaimDue(until, time.Hour, 10, func(id string) bool { return id == "held" })
		if err != nil {
			t.Fatalf("ClaimDue: %v", err)
		}
		if !slices.Equal(claimedIDs(cl), deliveryIDs(held)) {
			t.Errorf("after the hold ClaimDue = %v, want %v", claimedIDs(cl), deliveryIDs(held))
		}
		checkDepth(t, s, 5)

		// Health is kept across reads, and forgotten when it is zero.
		if err := s.SetHealth("held", Health{}); err != nil {
			t.Fatalf("SetHealth(zero): %v", err)
		}
		if h := s.Health("held"); !h.IsZero() {
			t.Errorf("Health after reset = %+v", h)
		}
		if err := s.SetHealth("nope", Health{Breaker: BreakerOpen}); err == nil {
			t.Error("SetHealth of an unknown webhook succeeded")
		}
	})
}

func TestEnableForgetsHealth(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	w := testWebhook("wh1", "k", t0, "create")
	mustCreate(t, s, w)
	ds := enqueueN(t, s, "k", 2, t0)
	if err := s.SetHealth("wh1", Health{Breaker: BreakerOpen, HoldUntil: t0.Add(time.Hour), FailingSince: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableWebhook("wh1", "failing"); err != nil {
		t.Fatal(err)
	}
	if got := s.CountBreakers(t0); got != (BreakerCounts{Disabled: 1}) {
		t.Errorf("CountBreakers = %+v, want one disabled", got)
	}
	// A change other than enabling keeps the health.
	w.Enabled = false
	w.Name = "renamed"
	if err := s.UpdateWebhook(w); err != nil {
		t.Fatal(err)
	}
	if h := s.Health("wh1"); h.FailingSince.IsZero() {
		t.Error("renaming a disabled webhook forgot its health")
	}
	w.Enabled = true
	if err := s.UpdateWebhook(w); err != nil {
		t.Fatal(err)
	}
	if h := s.Health("wh1"); !h.IsZero() {
		t.Errorf("Health after enabling = %+v, want zero", h)
	}
	if cl := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(cl), deliveryIDs(ds)) {
		t.Errorf("after enabling ClaimDue = %v, want %v", claimedIDs(cl), deliveryIDs(ds))
	}
	if got := s.CountBreakers(t0); got != (BreakerCounts{Closed: 1}) {
		t.Errorf("CountBreakers = %+v, want one closed", got)
	}

	// Deleting forgets it too; the deliveries are still handed out.
	if err := s.SetHealth("wh1", Health{FailingSince: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWebhook("wh1"); err != nil {
		t.Fatal(err)
	}
	if h := s.Health("wh1"); !h.IsZero() {
		t.Errorf("Health after delete = %+v", h)
	}
	if cl := mustClaim(t, s, t0.Add(time.Hour), 10); len(cl) != 2 || cl[0].Webhook != nil {
		t.Errorf("deleted webhook's deliveries: %v", claimedIDs(cl))
	}
}

func TestCountBreakers(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	for _, id := range []string{"a", "b", "c", "d"} {
		mustCreate(t, s, testWebhook(id, "k", t0, "create"))
	}
	if err := s.SetHealth("b", Health{Breaker: BreakerOpen, HoldUntil: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHealth("c", Health{Breaker: BreakerOpen, HoldUntil: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableWebhook("d", "operator"); err != nil {
		t.Fatal(err)
	}
	want := BreakerCounts{Closed: 1, Open: 1, HalfOpen: 1, Disabled: 1}
	if got := s.CountBreakers(t0); got != want {
		t.Errorf("CountBreakers = %+v, want %+v", got, want)
	}
}

// TestBusyWebhookDoesNotHideOthers: a webhook whose deliveries accept
// turns down does not keep the next webhook's from being claimed, however
// long its queue.
func TestBusyWebhookDoesNotHideOthers(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("busy", "k1", t0, "create"))
	mustCreate(t, s, testWebhook("idle", "k2", t0, "create"))
	enqueueN(t, s, "k1", 50, t0.Add(-time.Minute)) // due first
	other := enqueueN(t, s, "k2", 1, t0)
	var asked []string
	cl, err := s.ClaimDue(t0, time.Minute, 10, func(id string) bool {
		asked = append(asked, id)
		return id != "busy"
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(claimedIDs(cl), deliveryIDs(other)) {
		t.Errorf("ClaimDue = %v, want %v", claimedIDs(cl), deliveryIDs(other))
	}
	if !slices.Equal(asked, []string{"busy", "idle"}) {
		t.Errorf("accept asked about %v, want busy once then idle", asked)
	}
}

func TestOldestPending(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		if _, ok, err := s.OldestPending(); ok || err != nil {
			t.Fatalf("OldestPending on empty store = %v, %v", ok, err)
		}
		mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
		first := enqueueN(t, s, "k", 1, t0)[0]
		second := enqueueN(t, s, "k", 1, t0.Add(time.Minute))[0]
		if at, ok, err := s.OldestPending(); err != nil || !ok || !at.Equal(t0) {
			t.Errorf("OldestPending = %v, %v, %v; want %v", at, ok, err, t0)
		}
		// Retrying does not change it; finishing does.
		mustClaim(t, s, t0, 10)
		mustComplete(t, s, first.ID, &Attempt{Status: 500}, Outcome{State: StatePending, NextAttemptAt: t0.Add(time.Hour)})
		if at, _, _ := s.OldestPending(); !at.Equal(t0) {
			t.Errorf("OldestPending after a retry = %v, want %v", at, t0)
		}
		mustComplete(t, s, first.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
		if at, _, _ := s.OldestPending(); !at.Equal(t0.Add(time.Minute)) {
			t.Errorf("OldestPending = %v, want %v", at, t0.Add(time.Minute))
		}
		mustComplete(t, s, second.ID, nil, Outcome{State: StateFailed})
		if _, ok, _ := s.OldestPending(); ok {
			t.Error("OldestPending with nothing pending")
		}
		checkDepth(t, s, 0)
	})
}

// TestScheduleSurvivesReopen checks that the schedule, health and depth
// are rebuilt from the queues when the store opens, even with markers and
// entries a crash left behind.
func TestScheduleSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, testWebhook("a", "k1", t0, "create"))
	mustCreate(t, s, testWebhook("b", "k2", t0, "create"))
	as := enqueueN(t, s, "k1", 3, t0)
	bs := enqueueN(t, s, "k2", 2, t0)
	if err := s.SetHealth("b", Health{Breaker: BreakerOpen, HoldUntil: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Schedule keys as earlier versions wrote them, a stray one included.
	err = s.DB().Update(func(txn *badger.Txn) error {
		for _, k := range []string{"ws/\x00\x00\x00\x00\x00\x00\x00\x01ghost", "wsp/a", "wn/a", "wn/ghost"} {
			if err := txn.Set([]byte(k), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir)
	checkDepth(t, s, 5)
	if h := s.Health("b"); h.Breaker != BreakerOpen {
		t.Errorf("health after reopen = %+v", h)
	}
	if cl := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(cl), deliveryIDs(as)) {
		t.Errorf("ClaimDue after reopen = %v, want %v", claimedIDs(cl), deliveryIDs(as))
	}
	// a's leases expired; they kept their place, ahead of b's.
	if cl := mustClaim(t, s, t0.Add(time.Hour), 10); !slices.Equal(claimedIDs(cl), append(deliveryIDs(as), deliveryIDs(bs)...)) {
		t.Errorf("ClaimDue after the hold = %v", claimedIDs(cl))
	}
	for _, p := range legacySchedulePrefixes {
		if left, _ := s.keysWithPrefix(p, 0); len(left) != 0 {
			t.Errorf("old schedule keys %s left after reopen: %q", p, left)
		}
	}
}

// TestMigrateOldQueue opens a store written with the single queue of
// earlier versions.
func TestMigrateOldQueue(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	ds := enqueueN(t, s, "k", 3, t0)
	// Rewrite the queue as earlier versions kept it, without age index,
	// the first delivery retried (displaced).
	err = s.DB().Update(func(txn *badger.Txn) error {
		for i, d := range ds {
			if err := txn.Delete(webhookQueueKey(d.WebhookID, d.NextAttemptAt, d.Seq)); err != nil {
				return err
			}
			if i == 0 {
				d.Attempts, d.NextAttemptAt = 1, t0.Add(time.Hour)
				if err := setRecord(txn, deliveryKey(d.ID), "delivery", d.ID, &d, 0); err != nil {
					return err
				}
			}
			if err := txn.Set(queueKey(d.NextAttemptAt, d.Seq), queueValue(d.ID, d.WebhookID)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir)
	checkDepth(t, s, 3)
	if old, _ := s.keysWithPrefix(prefixQueue, 0); len(old) != 0 {
		t.Errorf("%d old queue entries left", len(old))
	}
	// The retried delivery is indexed by age, the others are not.
	checkOldest(t, s, t0, false)
	if n := countAgeEntries(t, s); n != 1 {
		t.Errorf("%d age entries after migration, want the retried delivery's", n)
	}
	if cl := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(cl), deliveryIDs(ds[1:])) {
		t.Errorf("ClaimDue after migration = %v, want %v", claimedIDs(cl), deliveryIDs(ds[1:]))
	}
	for _, d := range ds[1:] {
		mustComplete(t, s, d.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	}
	checkOldest(t, s, t0, false)
	if cl := mustClaim(t, s, t0.Add(time.Hour), 10); !slices.Equal(claimedIDs(cl), deliveryIDs(ds[:1])) {
		t.Errorf("ClaimDue of the retried delivery = %v, want %v", claimedIDs(cl), ds[0].ID)
	}
}

// TestPutBackBeforeBound: a delivery put back ahead of the queue's bound
// (first in line, at its creation time) and one enqueued while every
// delivery is leased are both found by the next ClaimDue.
func TestPutBackBeforeBound(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	ds := enqueueN(t, s, "k", 3, t0)
	later := t0.Add(time.Second)
	cl := mustClaim(t, s, later, 2)
	if !slices.Equal(claimedIDs(cl), deliveryIDs(ds[:2])) {
		t.Fatalf("first claim = %v", claimedIDs(cl))
	}
	mustComplete(t, s, ds[0].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	// The scan moved the bound past ds[1]'s old entry; putting it back
	// at its creation time writes below the bound.
	if cl := mustClaim(t, s, later, 1); !slices.Equal(claimedIDs(cl), deliveryIDs(ds[2:])) {
		t.Fatalf("second claim = %v", claimedIDs(cl))
	}
	mustComplete(t, s, ds[1].ID, nil, Outcome{State: StatePending, NextAttemptAt: ds[1].CreatedAt})
	if cl := mustClaim(t, s, later, 10); !slices.Equal(claimedIDs(cl), deliveryIDs(ds[1:2])) {
		t.Errorf("claim after the put-back = %v, want %v", claimedIDs(cl), ds[1].ID)
	}
	// Everything is leased now: the bound is at a lease's expiry, after
	// the time a new delivery is due.
	if cl := mustClaim(t, s, later, 10); len(cl) != 0 {
		t.Fatalf("claim with everything leased = %v", claimedIDs(cl))
	}
	fresh := enqueueN(t, s, "k", 1, later)
	if cl := mustClaim(t, s, later, 10); !slices.Equal(claimedIDs(cl), deliveryIDs(fresh)) {
		t.Errorf("claim after an enqueue = %v, want %v", claimedIDs(cl), fresh[0].ID)
	}
	if next, ok, err := s.NextDue(); err != nil || !ok || next.Before(later) {
		t.Errorf("NextDue = %v, %v, %v; want a lease expiry after %v", next, ok, err, later)
	}
}

// TestBoundsFollowWriters interleaves a scan with a writer in each order
// the bounds allow: the writer lowers (P) before it commits and after (Q);
// the scan reads the bound and generation (R) before it opens its
// snapshot, and raises (X) with that generation. Whatever the order, once
// the writer is done the bound is at or before its key.
func TestBoundsFollowWriters(t *testing.T) {
	const id = "a"
	head := webhookQueueKey(id, t0.Add(time.Minute), 9)
	written := webhookQueueKey(id, t0, 10) // before head
	w := []queuedKey{{webhookID: id, key: written, due: unixNanos(t0)}}
	// The worst case for each order: the scan's snapshot misses the
	// written key (the commit came after it, so after R) and the scan
	// finds head. P-Q-R-X is not among them: R before the snapshot and
	// the snapshot before the commit put R before Q. (That order, with R
	// after the snapshot, once stranded deliveries.)
	orders := []string{"PRXQ", "PRQX", "RPQX", "RPXQ", "RXPQ"}
	for _, order := range orders {
		t.Run(order, func(t *testing.T) {
			b := newBounds()
			b.lower([]queuedKey{{webhookID: id, key: webhookQueueKey(id, t0.Add(-time.Hour), 1), due: unixNanos(t0.Add(-time.Hour))}}, nil)
			var gen uint64
			for _, step := range order {
				switch step {
				case 'P', 'Q':
					b.lower(w, nil)
				case 'R':
					_, gen = b.queue(id)
				case 'X':
					b.raise(id, gen, head, unixNanos(t0.Add(time.Minute)))
				}
			}
			key, _ := b.queue(id)
			if key != nil && bytes.Compare(key, written) > 0 {
				t.Errorf("bound %x is after the written key %x", key, written)
			}
			var due uint64 = emptyDue
			b.each(func(_ string, d uint64, _ []byte, _ uint64) { due = d })
			if due > unixNanos(t0) {
				t.Errorf("bound due %v is after the written key's %v", nanosTime(due), t0)
			}
		})
	}
	// The order that once stranded deliveries fails when the scan reads
	// after its snapshot: guard the test itself.
	b := newBounds()
	b.lower([]queuedKey{{webhookID: id, key: webhookQueueKey(id, t0.Add(-time.Hour), 1), due: unixNanos(t0.Add(-time.Hour))}}, nil)
	b.lower(w, nil)
	b.lower(w, nil)
	_, gen := b.queue(id)
	b.raise(id, gen, head, unixNanos(t0.Add(time.Minute)))
	if key, _ := b.queue(id); !bytes.Equal(key, head) {
		t.Errorf("P-Q-R-X: bound %x, want head %x (a raise with a current generation moves it)", key, head)
	}
}

// TestClaimCostIgnoresDeliveredHistory: deliveries sent and completed leave
// deleted keys behind in Badger; a claim after 20,000 of them costs about
// what the first did, where a scan from the start of the queue would walk
// them all (45 ms per claim after 5,000, under -race, before the bounds).
func TestClaimCostIgnoresDeliveredHistory(t *testing.T) {
	n := 20_000
	if testing.Short() || raceEnabled {
		n = 5_000
	}
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	timeClaim := func() time.Duration {
		t.Helper()
		ds := enqueueN(t, s, "k", 1, t0)
		start := time.Now()
		cl := mustClaim(t, s, t0, 64)
		took := time.Since(start)
		if !slices.Equal(claimedIDs(cl), deliveryIDs(ds)) {
			t.Fatalf("claim = %v, want %v", claimedIDs(cl), ds[0].ID)
		}
		mustComplete(t, s, ds[0].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
		return took
	}
	// Medians: a memtable flush can stall any one call.
	median := func() time.Duration {
		ds := make([]time.Duration, 21)
		for i := range ds {
			ds[i] = timeClaim()
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	first := median()
	for i := 0; i < n; i += 500 {
		ds := enqueueN(t, s, "k", 500, t0)
		for len(ds) > 0 {
			cl := mustClaim(t, s, t0, 64)
			if len(cl) == 0 {
				t.Fatal("nothing claimed with deliveries due")
			}
			for _, c := range cl {
				mustComplete(t, s, c.Delivery.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
			}
			ds = ds[len(cl):]
		}
	}
	after := median()
	t.Logf("ClaimDue of one delivery: first %v, after %d delivered %v", first, n, after)
	if after > 10*first+2*time.Millisecond {
		t.Errorf("ClaimDue after %d deliveries took %v (median), first %v", n, after, first)
	}
	if at, ok, err := s.OldestPending(); err != nil || ok {
		t.Errorf("OldestPending with nothing pending = %v, %v, %v", at, ok, err)
	}
}

// TestDepthFollowsEveryPath checks the in-memory QueueDepth against a count
// after each kind of change.
func TestDepthFollowsEveryPath(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	ds := enqueueN(t, s, "k", 4, t0)
	checkDepth(t, s, 4)
	mustClaim(t, s, t0, 2)
	checkDepth(t, s, 4)
	mustComplete(t, s, ds[0].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	mustComplete(t, s, ds[1].ID, &Attempt{Status: 500}, Outcome{State: StatePending})
	checkDepth(t, s, 3)
	mustComplete(t, s, ds[0].ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded}) // late duplicate
	checkDepth(t, s, 3)
	if err := s.DB().Update(func(txn *badger.Txn) error { return txn.Delete(eventKey(ds[2].EventID)) }); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, s, t0, 10) // fails the one without event
	checkDepth(t, s, 2)
	if _, err := s.EnqueueDelivery(testEvent("x", "k", "create"), "a", t0); err != nil {
		t.Fatal(err)
	}
	checkDepth(t, s, 3)
}

// TestClaimCostIgnoresHeldBacklog measures ClaimDue with a long backlog for
// one webhook that is held (a paused breaker) or turned down (busy): the
// other webhook's delivery is claimed in about the time it takes alone.
func TestClaimCostIgnoresHeldBacklog(t *testing.T) {
	backlog := 100_000
	if testing.Short() || raceEnabled {
		backlog = 20_000
	}
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("big", "k1", t0, "create"))
	mustCreate(t, s, testWebhook("small", "k2", t0, "create"))
	// The backlog is written as Enqueue would, but in a write batch: much
	// faster, under -race above all.
	start := time.Now()
	ev := testEvent("big", "k1", "create")
	wb := s.DB().NewWriteBatch()
	if err := wb.Set(eventKey(ev.ID), encodeEventValue(&ev, uint64(backlog))); err != nil {
		t.Fatal(err)
	}
	for i := range backlog {
		d := Delivery{ID: fmt.Sprintf("msg_big%07d", i), EventID: ev.ID, WebhookID: "big", Seq: uint64(1_000_000 + i),
			State: StatePending, NextAttemptAt: t0.Add(-time.Hour), CreatedAt: t0.Add(-time.Hour)}
		val, _ := json.Marshal(&d)
		for _, w := range []write{
			{key: deliveryKey(d.ID), val: val},
			{key: webhookQueueKey("big", d.NextAttemptAt, d.Seq), val: []byte(d.ID)},
		} {
			if err := wb.Set(w.key, w.val); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.loadQueues(); err != nil {
		t.Fatal(err)
	}
	s.depth.Add(int64(backlog))
	s.leases.count(queueDelta{"big": int64(backlog)})
	fill := time.Since(start)

	measure := func(accept func(string) bool) time.Duration {
		t.Helper()
		const rounds = 20
		var total time.Duration
		for i := range rounds {
			d := enqueueN(t, s, "k2", 1, t0)[0]
			start := time.Now()
			cl, err := s.ClaimDue(t0, time.Minute, 64, accept)
			total += time.Since(start)
			if err != nil || len(cl) != 1 || cl[0].Delivery.ID != d.ID {
				t.Fatalf("round %d: ClaimDue = %v, %v; want %s", i, claimedIDs(cl), err, d.ID)
			}
			mustComplete(t, s, d.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
		}
		return total / rounds
	}
	// Baseline: the small webhook alone (the big one disabled).
	if err := s.DisableWebhook("big", "test"); err != nil {
		t.Fatal(err)
	}
	alone := measure(nil)
	big := testWebhook("big", "k1", t0, "create")
	if err := s.UpdateWebhook(big); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHealth("big", Health{Breaker: BreakerOpen, HoldUntil: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	held := measure(nil)
	if err := s.SetHealth("big", Health{}); err != nil {
		t.Fatal(err)
	}
	busy := measure(func(id string) bool { return id != "big" })
	checkDepth(t, s, backlog)
	t.Logf("ClaimDue with a backlog of %d deliveries for another webhook (filled in %v): alone %v, backlog held %v, backlog turned down %v",
		backlog, fill.Round(time.Millisecond), alone, held, busy)
	// Scanning the backlog would take tens of milliseconds; the claim
	// stays within a generous multiple of the baseline or 5ms.
	for name, d := range map[string]time.Duration{"held": held, "busy": busy} {
		if d > 10*alone+5*time.Millisecond {
			t.Errorf("ClaimDue with the backlog %s took %v, alone %v", name, d, alone)
		}
	}
}

// TestEnqueueDuringScanIsNotStranded commits a delivery after a claim's
// snapshot opened but before it looked at the queue: the claim finds the
// queue empty, and must not record it so, or the delivery would wait for
// the webhook's next write. (It did, while bounds were read after the
// snapshot opened.)
func TestEnqueueDuringScanIsNotStranded(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	first := enqueueN(t, s, "k", 1, t0)
	for _, c := range mustClaim(t, s, t0, 10) {
		mustComplete(t, s, c.Delivery.ID, &Attempt{Status: 200}, Outcome{State: StateSucceeded})
	}
	var late []Delivery
	scanHook = func() {
		scanHook = nil
		ds, err := s.Enqueue([]Event{testEvent("late", "k", "create")}, t0)
		if err != nil {
			t.Error(err)
		}
		late = ds
	}
	t.Cleanup(func() { scanHook = nil })
	if cl := mustClaim(t, s, t0, 10); len(cl) != 0 {
		t.Fatalf("claim whose snapshot predates the enqueue got %v", claimedIDs(cl))
	}
	if len(late) != 1 || late[0].ID == first[0].ID {
		t.Fatalf("enqueue during the scan: %+v", late)
	}
	if cl := mustClaim(t, s, t0, 10); !slices.Equal(claimedIDs(cl), deliveryIDs(late)) {
		t.Errorf("next claim = %v, want %v", claimedIDs(cl), late[0].ID)
	}
}
