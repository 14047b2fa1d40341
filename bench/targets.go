package main

import (
	"fmt"
	"time"
)

// targetCheck is one of the performance targets the project set itself
// (README, Performance), as this run measured it.
type targetCheck struct {
	target string
	got    string
	met    bool
}

// targets collects the run's target checks, in the order the phases ran.
type targets []targetCheck

// add records one check.
func (t *targets) add(target string, met bool, format string, args ...any) {
	*t = append(*t, targetCheck{target: target, got: fmt.Sprintf(format, args...), met: met})
}

// addedP99 checks an added p99 latency at a fixed rate (req/s) against
// the 1 ms target.
func (t *targets) addedP99(call string, rate int, added time.Duration) {
	t.add(fmt.Sprintf("%s at %d req/s: added p99 ≤ 1 ms", call, rate), added <= time.Millisecond, "%s", ms(added))
}

// write appends the checks to r as a table; nothing if there are none.
func (t targets) write(r *report) {
	if len(t) == 0 {
		return
	}
	r.linef("## Targets\n")
	r.linef("One run on a shared machine: compare runs, not a single line.\n")
	r.linef("| Target | This run | Met |")
	r.linef("|---|---|---|")
	for _, c := range t {
		r.linef("| %s | %s | %s |", c.target, c.got, map[bool]string{true: "yes", false: "**no**"}[c.met])
	}
	r.linef("")
}
