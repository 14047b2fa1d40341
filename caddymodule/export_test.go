package caddymodule

import "github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/watch"

// WatchStats returns the counters of the watch hub of the store with pool
// key poolKey ("memory", or "dir:" and the absolute directory), and false
// when no config uses that store.
func WatchStats(poolKey string) (watch.Stats, bool) {
	var (
		s     watch.Stats
		found bool
	)
	watchHubs.Range(func(k, v any) bool {
		if k == poolKey {
			s, found = v.(*watchHub).mgr.Stats(), true
			return false
		}
		return true
	})
	return s, found
}

// WatchesEnded exposes the process-wide count of watches ended per reason.
var WatchesEnded = watchesEnded
