package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// Interface guard: the store hands fresh deliveries off.
var _ Handoffer = (*store.Store)(nil)

// enqueueFresh enqueues one event for the harness's API key, as the app
// does for a proxied call, and returns its deliveries without offering them.
func (h *harness) enqueueFresh(tag string) []store.Fresh {
	h.t.Helper()
	i := h.seq.Add(1)
	ev := store.Event{
		ID:        fmt.Sprintf("evt_%d", i),
		Trigger:   "Upload",
		APIKey:    "quiet-river-1234",
		Payload:   fmt.Appendf(nil, `{"event":"Upload","apiKey":"quiet-river-1234","entryIds":[%q],"metadataKeys":[],"metadataValues":[]}`, tag),
		CreatedAt: h.clock.Now(),
	}
	fresh, err := h.st.EnqueueFresh([]store.Event{ev}, h.clock.Now())
	if err != nil {
		h.t.Fatalf("EnqueueFresh: %v", err)
	}
	return fresh
}

// TestOfferNeedsNoClaim: with the loop's poll an hour long and no Notify,
// deliveries offered one after another all go out, and the loop claims
// only when it starts (and when an Offer meets it claiming).
func TestOfferNeedsNoClaim(t *testing.T) {
	var out *countingOutbox
	h := newHarness(t, func(h *harness, c *Config) {
		out = &countingOutbox{Store: h.st}
		c.Outbox = out
	})
	h.d.poll = time.Hour
	rc := h.newReceiver(nil)
	h.webhook(rc)
	h.d.Start()
	waitFor(t, "the loop's first claim", func() bool { return out.claims.Load() >= 1 })
	const n = 10
	for i := range n {
		fresh := h.enqueueFresh(fmt.Sprint("e", i))
		if len(fresh) != 1 {
			t.Fatalf("EnqueueFresh made %d deliveries, want 1", len(fresh))
		}
		h.d.Offer(fresh)
		h.waitState(fresh[0].Delivery.ID, store.StateSucceeded)
	}
	if got := out.claims.Load(); got > 2 {
		t.Errorf("%d claims for %d deliveries offered one after another, want at most 2", got, n)
	}
	if got := len(rc.requests()); got != n {
		t.Errorf("receiver got %d requests, want %d", got, n)
	}
}

// TestOfferKeepsEachProducersOrder: producers enqueue and offer events to
// one webhook concurrently, while the receiver fails some requests; with
// strict ordering, each producer's first attempts reach the receiver in
// the producer's order, hand-offs and claims mixed.
func TestOfferKeepsEachProducersOrder(t *testing.T) {
	for _, ordering := range []Ordering{OrderingStrict, OrderingConcurrent} {
		t.Run(string(ordering), func(t *testing.T) {
			h := newHarness(t, func(_ *harness, c *Config) {
				c.Workers, c.PerWebhook, c.Ordering = 8, 2, ordering
			})
			var failed sync.Map // webhook-id: failed once already
			rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
				if i%17 != 5 {
					return
				}
				if _, again := failed.LoadOrStore(r.Header.Get("webhook-id"), true); !again {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			})
			h.webhook(rc)
			h.d.Start()
			const producers, each = 4, 40
			var wg sync.WaitGroup
			ids := make(chan string, producers*each)
			for p := range producers {
				wg.Go(func() {
					for i := range each {
						fresh := h.enqueueFresh(fmt.Sprintf("p%d-%03d", p, i))
						h.d.Offer(fresh)
						ids <- fresh[0].Delivery.ID
					}
				})
			}
			wg.Wait()
			close(ids)
			for id := range ids {
				h.waitState(id, store.StateSucceeded)
			}
			if ordering != OrderingStrict {
				return
			}
			// First attempts, by producer, in the order they arrived.
			seen := map[string]bool{}
			last := map[int]int{}
			for _, r := range rc.requests() {
				if seen[r.id] {
					continue // a retry
				}
				seen[r.id] = true
				var body struct {
					EntryIDs []string `json:"entryIds"`
				}
				if err := json.Unmarshal(r.body, &body); err != nil || len(body.EntryIDs) != 1 {
					t.Fatalf("body %s: %v", r.body, err)
				}
				var p, i int
				if _, err := fmt.Sscanf(body.EntryIDs[0], "p%d-%d", &p, &i); err != nil {
					t.Fatalf("entry id %q: %v", body.EntryIDs[0], err)
				}
				if prev, ok := last[p]; ok && i < prev {
					t.Errorf("producer %d: event %d arrived after event %d", p, i, prev)
				}
				last[p] = i
			}
		})
	}
}

// TestOfferWhenNotRunning: an Offer before Start, or after Stop, launches
// nothing and loses nothing: the delivery stays queued, and a started
// dispatcher sends it.
func TestOfferWhenNotRunning(t *testing.T) {
	h := newHarness(t, nil)
	rc := h.newReceiver(nil)
	h.webhook(rc)
	before := h.enqueueFresh("before")
	h.d.Offer(before)
	if n := rc.n.Load(); n != 0 {
		t.Fatalf("receiver got %d requests before Start", n)
	}
	h.d.Start()
	h.waitState(before[0].Delivery.ID, store.StateSucceeded)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.d.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	after := h.enqueueFresh("after")
	h.d.Offer(after)
	if d, err := h.st.GetDelivery(after[0].Delivery.ID); err != nil || d.State != store.StatePending {
		t.Fatalf("delivery offered after Stop = %+v, %v; want pending", d, err)
	}
	if n := rc.n.Load(); n != 1 {
		t.Errorf("receiver got %d requests, want 1 (nothing after Stop)", n)
	}
	// Another dispatcher on the same store sends it.
	next := New(h.cfg)
	next.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = next.Stop(ctx)
	}()
	h.waitState(after[0].Delivery.ID, store.StateSucceeded)
}

// slowOutbox is a store whose Complete waits until released.
type slowOutbox struct {
	*store.Store
	release chan struct{}
}

func (o *slowOutbox) Complete(id string, at *store.Attempt, out store.Outcome, now time.Time) error {
	<-o.release
	return o.Store.Complete(id, at, out, now)
}

// TestOfferSlowedBySlowStore: attempts waiting for their outcome to be
// recorded, beyond one per worker, stop hand-offs as they stop claims, so
// that a slow store does not pile up attempts sent and not recorded.
func TestOfferSlowedBySlowStore(t *testing.T) {
	out := &slowOutbox{release: make(chan struct{})}
	const workers = 2
	h := newHarness(t, func(h *harness, c *Config) {
		out.Store = h.st
		c.Outbox = out
		c.Workers, c.PerWebhook, c.Ordering = workers, workers, OrderingConcurrent
	})
	rc := h.newReceiver(nil)
	h.webhook(rc)
	h.d.Start()
	var ids []string
	for i := range 12 {
		fresh := h.enqueueFresh(fmt.Sprint("e", i))
		ids = append(ids, fresh[0].Delivery.ID)
		h.d.Offer(fresh)
		// Whatever was launched has been answered and waits in Complete.
		waitFor(t, "attempts to reach Complete", func() bool {
			h.d.mu.Lock()
			defer h.d.mu.Unlock()
			return h.d.inflight == 0
		})
	}
	h.d.mu.Lock()
	recording := h.d.recording
	h.d.mu.Unlock()
	if recording > 2*workers {
		t.Errorf("%d attempts waiting for the store, want at most %d (2 × workers)", recording, 2*workers)
	}
	close(out.release)
	for _, id := range ids {
		h.waitState(id, store.StateSucceeded)
	}
}
