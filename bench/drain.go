package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/sink"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// drainMode is the dispatcher configuration of one drain.
type drainMode struct {
	ordering   sink.Ordering
	perWebhook int
	workers    int
	http1Only  bool
}

func (m drainMode) String() string {
	o := m.ordering
	if o == "" {
		o = sink.OrderingStrict
	}
	s := fmt.Sprintf("`ordering %s`, `per_webhook %d`, `workers %d`", o, m.perWebhook, m.workers)
	if !m.http1Only {
		s += ", `versions 1.1 2`"
	}
	return s
}

// drainResult is what one drain measured.
type drainResult struct {
	delivered   int
	elapsed     time.Duration
	enqueueRate float64 // events/s written into the outbox before the drain
	// cpu is the CPU time this process (dispatcher and store: nothing
	// else runs in it meanwhile) and the receiver process used during the
	// drain; 0 if unknown.
	cpu time.Duration
	// receiverCPU is the receiver's part of cpu.
	receiverCPU time.Duration
}

// cpuPerDelivery formats the drain's CPU time per delivery.
func (r drainResult) cpuPerDelivery() string {
	us := cpuMicros(r)
	if us == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f µs", us)
}

// since sets r's CPU times to what both processes used since s0 (left
// unknown if either sample failed).
func (r *drainResult) since(s0, s1 cpuSample) {
	if !s0.ok || !s1.ok {
		return
	}
	r.cpu = s1.ours + s1.receiver - s0.ours - s0.receiver
	r.receiverCPU = s1.receiver - s0.receiver
}

func (r drainResult) rate() float64 { return float64(r.delivered) / r.elapsed.Seconds() }

// drain fills a fresh Badger outbox with n events for one webhook, then
// starts a dispatcher configured by mode and times how long the receiver
// takes to get them all.
func drain(dir string, rc *receiver, n int, roots *x509.CertPool, mode drainMode) drainResult {
	st, err := store.Open(store.Options{Dir: filepath.Join(dir, fmt.Sprintf("drain-%d", time.Now().UnixNano()))})
	must(err, "opening drain store")
	defer st.Close()
	secret, err := sink.NewSecret()
	must(err, "secret")
	now := time.Now()
	must(st.CreateWebhook(store.Webhook{
		ID: "wh_drain", Name: "drain", URL: rc.url() + "/drain", APIKey: "drain-key",
		Triggers: []string{"Upload"}, Enabled: true, Secret: secret, CreatedAt: now, UpdatedAt: now,
	}), "creating webhook")

	start := time.Now()
	const batch = 1000
	for i := 0; i < n; i += batch {
		evs := make([]store.Event, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			evs = append(evs, store.Event{
				ID: store.NewEventID(), Trigger: "Upload", APIKey: "drain-key", CreatedAt: now,
				Payload: fmt.Appendf(nil, `{"event":"Upload","apiKey":"drain-key","entryIds":["e%d"],"metadataKeys":[],"metadataValues":[]}`, j),
			})
		}
		_, err := st.Enqueue(evs, now)
		must(err, "enqueue")
	}
	res := drainResult{enqueueRate: float64(n) / time.Since(start).Seconds()}

	base := rc.count()
	d := sink.New(sink.Config{
		Outbox: st,
		Client: sink.NewClient(sink.ClientOptions{
			Policy: sink.Policy{AllowPrivate: true}, RootCAs: roots,
			MaxIdleConnsPerHost: mode.workers, // as the app sets it
			HTTP1Only:           mode.http1Only,
		}),
		Ordering:   mode.ordering,
		PerWebhook: mode.perWebhook,
		Workers:    mode.workers,
	})
	cpu0 := rc.cpuWithOurs()
	start = time.Now()
	d.Start()
	deadline := start.Add(10 * time.Minute)
	got := rc.count() - base
	for got < int64(n) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		got = rc.count() - base
	}
	res.elapsed = time.Since(start)
	res.delivered = int(got)
	res.since(cpu0, rc.cpuWithOurs())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.Stop(ctx)
	return res
}
