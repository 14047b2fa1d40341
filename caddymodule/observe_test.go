package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/sink"
)

func TestValidateDelivery(t *testing.T) {
	d := func(v time.Duration) caddy.Duration { return caddy.Duration(v) }
	for _, tc := range []struct {
		name    string
		breaker *BreakerOptions
		err     string
	}{
		{"default", nil, ""},
		{"off", &BreakerOptions{Off: true}, ""},
		{"full", &BreakerOptions{FailureRatio: 1, MinAttempts: 3, Window: d(time.Minute), Pause: d(time.Second), MaxPause: d(time.Minute)}, ""},
		{"ratio above 1", &BreakerOptions{FailureRatio: 1.2}, "failure_ratio must be from 0 to 1"},
		{"negative ratio", &BreakerOptions{FailureRatio: -0.1}, "failure_ratio must be from 0 to 1"},
		{"negative attempts", &BreakerOptions{MinAttempts: -1}, "min_attempts must not be negative"},
		{"negative window", &BreakerOptions{Window: d(-time.Second)}, "must not be negative"},
		{"max below pause", &BreakerOptions{Pause: d(time.Minute), MaxPause: d(time.Second)}, "max_pause 1s is shorter than pause 1m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := App{Breaker: tc.breaker}
			err := a.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("Validate = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestBreakerOptionsDefaults(t *testing.T) {
	var none *BreakerOptions
	if got := none.sinkConfig(); got != (sink.BreakerConfig{}) {
		t.Errorf("nil options = %+v, want the zero config (defaults)", got)
	}
	b := &BreakerOptions{FailureRatio: 0.7, MinAttempts: 5, Window: caddy.Duration(time.Minute), Pause: caddy.Duration(time.Second), MaxPause: caddy.Duration(time.Hour)}
	want := sink.BreakerConfig{FailureRatio: 0.7, MinAttempts: 5, Window: time.Minute, Pause: time.Second, MaxPause: time.Hour}
	if got := b.sinkConfig(); got != want {
		t.Errorf("sinkConfig = %+v, want %+v", got, want)
	}
}

// TestRegisterMetricsTwice: registering into a registry that already has
// the collectors (two apps in one config context) is fine, and a fresh
// registry (a reload) gets the same collectors, values kept.
func TestRegisterMetricsTwice(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := registerMetrics(reg); err != nil {
		t.Fatalf("second registration: %v", err)
	}
	countResult(sink.Result{Outcome: sink.OutcomeSucceeded, Attempt: 1, Duration: time.Millisecond})
	value := func(reg *prometheus.Registry) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("Gather: %v", err)
		}
		for _, mf := range mfs {
			if mf.GetName() != metricsNamespace+"_deliveries_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == sink.OutcomeSucceeded {
					return m.GetCounter().GetValue()
				}
			}
		}
		t.Fatal("deliveries_total{result=succeeded} not gathered")
		return 0
	}
	before := value(reg)
	if before < 1 {
		t.Errorf("deliveries_total{result=succeeded} = %v, want at least 1", before)
	}
	fresh := prometheus.NewPedanticRegistry()
	if err := registerMetrics(fresh); err != nil {
		t.Fatal(err)
	}
	if got := value(fresh); got != before {
		t.Errorf("after re-registering, %v, want %v", got, before)
	}
}
