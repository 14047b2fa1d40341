package sink

import (
	"sync"
	"sync/atomic"
)

// boundedCache keeps values computed once per key, safe for concurrent use.
// Past a limit it starts over, so that the keys of what is gone (deleted
// webhooks, rotated secrets) leave it.
type boundedCache[V any] struct {
	m sync.Map
	n atomic.Int64 // stores since it last started over
}

// load returns the value kept for k.
func (c *boundedCache[V]) load(k string) (V, bool) {
	v, ok := c.m.Load(k)
	if !ok {
		var zero V
		return zero, false
	}
	return v.(V), true
}

// store keeps v for k, emptying the cache first once it has taken limit
// values, and returns the value kept: v, or the one another caller stored
// for k meanwhile.
func (c *boundedCache[V]) store(k string, v V, limit int64) V {
	if c.n.Add(1) > limit {
		c.m.Clear()
		c.n.Store(1)
	}
	kept, _ := c.m.LoadOrStore(k, v)
	return kept.(V)
}
