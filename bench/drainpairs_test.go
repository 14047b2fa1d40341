package main

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	pair := func(rate float64) drainPair {
		// rate deliveries in one second.
		return drainPair{drain: drainResult{delivered: int(rate), elapsed: time.Second}}
	}
	rate := func(p drainPair) float64 { return p.drain.rate() }
	for _, tc := range []struct {
		name  string
		rates []float64
		want  pairSummary
	}{
		{"none", nil, pairSummary{}},
		{"one", []float64{7}, pairSummary{median: 7, low: 7, high: 7}},
		{"odd count, unsorted", []float64{30, 10, 20}, pairSummary{median: 20, low: 10, high: 30}},
		{"even count: mean of the middle two", []float64{40, 10, 30, 20}, pairSummary{median: 25, low: 10, high: 40}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pairs []drainPair
			for _, r := range tc.rates {
				pairs = append(pairs, pair(r))
			}
			if got := summarize(pairs, rate); got != tc.want {
				t.Errorf("summarize(%v) = %+v, want %+v", tc.rates, got, tc.want)
			}
		})
	}
}

func TestDrainResultSince(t *testing.T) {
	s0 := cpuSample{ours: 10 * time.Second, receiver: 4 * time.Second, ok: true}
	s1 := cpuSample{ours: 13 * time.Second, receiver: 5 * time.Second, ok: true}
	r := drainResult{delivered: 100000}
	r.since(s0, s1)
	if r.cpu != 4*time.Second || r.receiverCPU != time.Second {
		t.Fatalf("since: cpu %v, receiver %v; want 4s and 1s", r.cpu, r.receiverCPU)
	}
	if got := cpuSplit(r); got != "30 + 10 µs" {
		t.Errorf("cpuSplit = %q, want %q", got, "30 + 10 µs")
	}
	var unknown drainResult
	unknown.since(s0, cpuSample{})
	if unknown.cpu != 0 || cpuSplit(unknown) != "—" {
		t.Errorf("a failed sample gave cpu %v and %q, want 0 and —", unknown.cpu, cpuSplit(unknown))
	}
}
