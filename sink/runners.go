package sink

import (
	"sync/atomic"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// attempt is a launched attempt waiting for a goroutine to run it (see
// Dispatcher.run for its fields).
type attempt struct {
	c     store.Claimed
	probe bool
	prev  <-chan struct{}
	gate  chan struct{}
}

// runnerIdle is how long a runner waits for its next attempt before it
// exits.
const runnerIdle = 30 * time.Second

// start runs a on an idle runner, or on a new one when none is idle.
//
// Runners outlive their attempts so that their stacks stay grown: an
// attempt goes deep into TLS and HTTP/2, and a fresh goroutine per attempt
// grew its stack by copying every time (runtime.newstack was ~6 % of
// Caddy's CPU at 2,000 deliveries/s).
func (d *Dispatcher) start(a attempt) {
	select {
	case d.handoff <- a:
	default:
		d.runnersStarted.Add(1)
		d.runnersLive.Add(1)
		go d.runner(a)
	}
}

// runner runs a, then the attempts handed to it, until it has been idle
// for runnerIdle or the dispatcher stops.
func (d *Dispatcher) runner(a attempt) {
	defer d.runnersLive.Add(-1)
	idle := time.NewTimer(runnerIdle)
	defer idle.Stop()
	for {
		d.run(a.c, a.probe, a.prev, a.gate)
		idle.Reset(runnerIdle)
		select {
		case a = <-d.handoff:
		case <-idle.C:
			return
		case <-d.stopCh:
			return
		}
	}
}

// runnerCounts counts the runners started and those still running, for
// tests and diagnostics.
type runnerCounts struct {
	runnersStarted atomic.Int64
	runnersLive    atomic.Int64
}
