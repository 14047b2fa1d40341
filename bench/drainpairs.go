package main

import (
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

// drainPair is one alternating pair: a drain and, just before or after
// it, the plugin's delivery client alone over the same receiver,
// concurrency and HTTP version.
type drainPair struct {
	drain, client drainResult
}

// ratio is the drain's rate as a share of the client's, in percent; 0 if
// the client delivered nothing.
func (p drainPair) ratio() float64 {
	if p.client.rate() <= 0 {
		return 0
	}
	return 100 * p.drain.rate() / p.client.rate()
}

// drainPairs runs n alternating pairs of a drain in mode and the plugin's
// client alone (the first of each pair alternates), so that the machine's
// other load, which moves a single drain by a third between two runs,
// falls on both sides of each ratio.
func drainPairs(dir string, rc *receiver, backlog int, roots *x509.CertPool, mode drainMode, n int) []drainPair {
	cm := ceilingMode{conns: mode.workers, http1Only: mode.http1Only, sinkClient: true}
	pairs := make([]drainPair, n)
	for i := range pairs {
		if i%2 == 0 {
			pairs[i].drain = drain(dir, rc, backlog, roots, mode)
			pairs[i].client = ceiling(rc, backlog, roots, cm)
			continue
		}
		pairs[i].client = ceiling(rc, backlog, roots, cm)
		pairs[i].drain = drain(dir, rc, backlog, roots, mode)
	}
	return pairs
}

// pairSummary is the median and range of one figure over the pairs.
type pairSummary struct{ median, low, high float64 }

// summarize returns the median and range of f over pairs (the mean of the
// middle two for an even count); the zero value for none.
func summarize(pairs []drainPair, f func(drainPair) float64) pairSummary {
	if len(pairs) == 0 {
		return pairSummary{}
	}
	v := make([]float64, len(pairs))
	for i, p := range pairs {
		v[i] = f(p)
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + m) / 2
	}
	return pairSummary{median: m, low: v[0], high: v[len(v)-1]}
}

// writeDrainPairs appends the pairs' table and their medians to r.
func writeDrainPairs(r *report, mode drainMode, backlog int, pairs []drainPair) {
	r.linef("%d alternating pairs of %s and the plugin's client alone (the same concurrency and version), each drain with a fresh %d-event backlog; the first of each pair alternates:\n",
		len(pairs), mode, backlog)
	r.linef("| Pair | drain deliveries/s | its CPU per delivery: ours + receiver's | the plugin's client alone | its CPU per delivery: ours + receiver's | drain ÷ client |")
	r.linef("|---|---|---|---|---|---|")
	for i, p := range pairs {
		r.linef("| %d | %.0f | %s | %.0f | %s | %.0f %% |", i+1, p.drain.rate(), cpuSplit(p.drain), p.client.rate(), cpuSplit(p.client), p.ratio())
	}
	d := summarize(pairs, func(p drainPair) float64 { return p.drain.rate() })
	c := summarize(pairs, func(p drainPair) float64 { return p.client.rate() })
	q := summarize(pairs, drainPair.ratio)
	r.linef("| median (range) | %.0f (%.0f–%.0f) | | %.0f (%.0f–%.0f) | | %.0f %% (%.0f–%.0f %%) |", d.median, d.low, d.high, c.median, c.low, c.high, q.median, q.low, q.high)
	ours := func(res drainResult) float64 { return cpuMicros(res) - receiverMicros(res) }
	do := summarize(pairs, func(p drainPair) float64 { return ours(p.drain) })
	co := summarize(pairs, func(p drainPair) float64 { return ours(p.client) })
	dr := summarize(pairs, func(p drainPair) float64 { return receiverMicros(p.drain) })
	cr := summarize(pairs, func(p drainPair) float64 { return receiverMicros(p.client) })
	if dr.median > 0 && cr.median > 0 {
		r.linef("\nMedian CPU per delivery in this process: %.0f µs draining against %.0f µs for the client alone, so the store and the dispatcher cost %.0f µs; in the receiver's: %.0f against %.0f µs (%+.0f µs: a slower sender gives the receiver fewer requests per wake-up).",
			do.median, co.median, do.median-co.median, dr.median, cr.median, dr.median-cr.median)
	}
	r.linef("")
}

// cpuSplit formats a result's CPU per delivery as this process's part
// plus the receiver's.
func cpuSplit(r drainResult) string {
	all := cpuMicros(r)
	if all == 0 {
		return "—"
	}
	rcv := receiverMicros(r)
	return fmt.Sprintf("%.0f + %.0f µs", all-rcv, rcv)
}

// receiverMicros is the receiver's CPU time per delivery in µs; 0 if
// unknown.
func receiverMicros(r drainResult) float64 {
	if r.cpu <= 0 || r.delivered == 0 {
		return 0
	}
	return float64(r.receiverCPU) / float64(time.Microsecond) / float64(r.delivered)
}

// cpuMicros is a result's CPU time per delivery in µs; 0 if unknown.
func cpuMicros(r drainResult) float64 {
	if r.cpu <= 0 || r.delivered == 0 {
		return 0
	}
	return float64(r.cpu) / float64(time.Microsecond) / float64(r.delivered)
}
