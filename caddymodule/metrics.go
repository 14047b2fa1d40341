package caddymodule

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/sink"
)

// metricsNamespace prefixes every metric: caddy_echo3d_webhooks_*.
const metricsNamespace = "caddy_echo3d_webhooks"

// metrics holds the plugin's Prometheus collectors. They are created once
// per process and registered into the registry of every config that loads
// the app, so their values carry over reloads. Labels are low-cardinality
// only: a trigger, an outcome, a cause, a state; never a webhook, URL or
// collection.
var metrics = struct {
	once sync.Once

	derived    *prometheus.CounterVec                // trigger
	derivedBy  map[events.Trigger]prometheus.Counter // derived's series, looked up without hashing labels
	deliveries *prometheus.CounterVec                // result
	duration   *prometheus.HistogramVec              // result
	paused     prometheus.Counter
	disabled   *prometheus.CounterVec // cause
	evicted    prometheus.Counter     // Processed watches over max_watches
	state      *stateCollector
}{}

// deliveryResults are the values of the result label: the outcomes of
// sink.Result.
var deliveryResults = []string{sink.OutcomeSucceeded, sink.OutcomeRetry, sink.OutcomeFailed, sink.OutcomeDisabled}

// initMetrics creates the collectors, once.
func initMetrics() {
	metrics.once.Do(func() {
		metrics.derived = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "events_derived_total",
			Help:      "Events derived from proxied traffic and written to the outbox, by trigger.",
		}, []string{"trigger"})
		metrics.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "deliveries_total",
			Help:      "Delivery attempts by result: succeeded, retry (failed, another attempt scheduled), failed (no attempt left, or webhook deleted), disabled (410 Gone).",
		}, []string{"result"})
		metrics.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Name:      "attempt_duration_seconds",
			Help:      "Duration of delivery attempts (request to response headers and the first 4 KiB of the body), by result.",
			Buckets:   []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30},
		}, []string{"result"})
		metrics.paused = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "webhooks_paused_total",
			Help:      "Times a webhook's circuit breaker opened because most of its recent attempts failed.",
		})
		metrics.disabled = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "webhooks_disabled_total",
			Help:      "Webhooks disabled by the delivery system, by cause: gone (the receiver answered 410), failing (no success for disable_after).",
		}, []string{"cause"})
		metrics.evicted = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "watches_evicted_total",
			Help:      "Uploads awaiting processing whose watch gave up without Processed because max_watches was reached.",
		})
		metrics.state = newStateCollector()
		// Series that exist from the start read 0 rather than missing.
		metrics.derivedBy = make(map[events.Trigger]prometheus.Counter, len(events.AllTriggers))
		for _, t := range events.AllTriggers {
			metrics.derivedBy[t] = metrics.derived.WithLabelValues(string(t))
		}
		for _, r := range deliveryResults {
			metrics.deliveries.WithLabelValues(r)
			metrics.duration.WithLabelValues(r)
		}
		metrics.disabled.WithLabelValues(sink.CauseGone)
		metrics.disabled.WithLabelValues(sink.CauseFailing)
	})
}

// registerMetrics registers the collectors into a config's registry. A
// collector already registered there (two configs provisioned in one
// context) is fine.
func registerMetrics(reg *prometheus.Registry) error {
	initMetrics()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		metrics.derived, metrics.deliveries, metrics.duration, metrics.paused, metrics.disabled, metrics.evicted, metrics.state,
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

// countDerived counts events written to the outbox.
func countDerived(payloads []events.Payload) {
	initMetrics()
	for _, p := range payloads {
		if c := metrics.derivedBy[p.Event]; c != nil {
			c.Inc()
			continue
		}
		metrics.derived.WithLabelValues(string(p.Event)).Inc()
	}
}

// countResult counts a delivery attempt.
func countResult(res sink.Result) {
	initMetrics()
	metrics.deliveries.WithLabelValues(res.Outcome).Inc()
	if res.Attempt > 0 {
		metrics.duration.WithLabelValues(res.Outcome).Observe(res.Duration.Seconds())
	}
}

// countHealth counts a webhook being paused or disabled.
func countHealth(c sink.HealthChange) {
	initMetrics()
	switch c.Change {
	case sink.ChangePaused:
		metrics.paused.Inc()
	case sink.ChangeDisabled:
		metrics.disabled.WithLabelValues(c.Cause).Inc()
	}
}

// metricsStore is the store the gauges read: that of the config started
// last (one process normally has one).
var metricsStore atomic.Pointer[storeHandle]

// stateCollector computes, at each scrape, the gauges that describe the
// store: outbox depth, age of the oldest undelivered event, webhooks per
// breaker state; and the counts of input the handler skipped. Each costs
// memory reads and a few seeks, whatever the backlog: the age of the
// oldest event one seek per webhook with something queued, the others at
// most one.
type stateCollector struct {
	depth, oldest, breakers, skipped *prometheus.Desc
}

func newStateCollector() *stateCollector {
	return &stateCollector{
		depth: prometheus.NewDesc(metricsNamespace+"_outbox_depth",
			"Deliveries waiting in the outbox (in flight, due, scheduled for a retry, or held for a paused or disabled webhook).", nil, nil),
		oldest: prometheus.NewDesc(metricsNamespace+"_oldest_undelivered_seconds",
			"Age of the oldest event with a delivery still in the outbox; 0 when the outbox is empty.", nil, nil),
		breakers: prometheus.NewDesc(metricsNamespace+"_breaker_state",
			"Webhooks per delivery state: closed (delivering), open (paused until the next probe), half_open (probing), disabled.", []string{"state"}, nil),
		skipped: prometheus.NewDesc(metricsNamespace+"_events_skipped_total",
			"Proxied calls whose events were (partly) not derived or not stored, by reason.", []string{"reason"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.oldest
	ch <- c.breakers
	ch <- c.skipped
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range skipReasons {
		ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.CounterValue, float64(skipped(r)), r)
	}
	h := metricsStore.Load()
	if h == nil {
		return
	}
	st := h.opened()
	if st == nil {
		return
	}
	now := time.Now()
	if n, err := st.QueueDepth(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n))
	}
	if at, ok, err := st.OldestPending(); err == nil {
		age := 0.0
		if ok {
			age = max(now.Sub(at).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age)
	}
	b := st.CountBreakers(now)
	for state, n := range map[string]int{"closed": b.Closed, "open": b.Open, "half_open": b.HalfOpen, "disabled": b.Disabled} {
		ch <- prometheus.MustNewConstMetric(c.breakers, prometheus.GaugeValue, float64(n), state)
	}
}

// Interface guard
var _ prometheus.Collector = (*stateCollector)(nil)
