package caddymodule

import (
	"fmt"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// SkipReasons lists the handler's skip reasons, for tests.
var SkipReasons = skipReasons

// Skipped returns the skip counter of reason, for tests.
func Skipped(reason string) uint64 { return skipped(reason) }

// Skips returns every skip counter, for tests.
func Skips() map[string]uint64 {
	out := make(map[string]uint64, len(skipReasons))
	for _, r := range skipReasons {
		out[r] = skipped(r)
	}
	return out
}

// CloseStoreUnderneath closes the open Badger database of the store kept in
// dir ("memory" for the in-memory store) behind the back of the configs
// using it, as a fatal store failure would.
func CloseStoreUnderneath(dir string) error {
	var st *store.Store
	stores.Range(func(_, v any) bool {
		h := v.(*storeHandle)
		if h.describe() == dir {
			st = h.opened()
			return false
		}
		return true
	})
	if st == nil {
		return fmt.Errorf("no open store for %s", dir)
	}
	return st.Close()
}

// DiskFree returns the free space of the file system holding dir.
func DiskFree(dir string) (uint64, bool) { return diskFree(dir) }
