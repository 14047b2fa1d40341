package caddymodule

import (
	"fmt"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// defaultMinFreeSpace is the free disk space below which the store is not
// used. Badger maps its memtable, value-log and table files into memory and
// fills them in place; on a file system with no space left, such a write
// faults (SIGBUS) and kills the whole Caddy process. Refusing to write
// while a margin remains turns a full disk into lost events, logged and
// counted, instead of a crash. The margin covers Badger's in-flight files
// at the store's settings (16 MiB memtables, 64 MiB value-log files) with
// room for a compaction.
const defaultMinFreeSpace = 256 << 20

// roomyFor is how long serviceable trusts a reading of at least twice
// min_free_space without asking the file system again. Every store call of
// the handler and of the delivery workers is checked, some four per event,
// and a statfs each time was 2 % of Caddy's CPU under event load. In that
// time Badger writes a few MiB at most, far below the margin; a reading
// nearer the limit is never trusted, so a filling disk is seen at once.
const roomyFor = 100 * time.Millisecond

// statFree reads the free space of a directory's file system (a variable
// so that tests can count the reads).
var statFree = diskFree

// usable returns the store, opening it if needed, when it can serve: it is
// not closed and its disk has at least the configured free space. Errors
// say what is wrong and how to fix it. App.Start opens the store without
// these checks, so that a nearly full disk degrades event capture but never
// stops Caddy from starting and proxying.
func (h *storeHandle) usable() (*store.Store, error) {
	st, err := h.open()
	if err != nil {
		return nil, err
	}
	return st, h.serviceable(st)
}

// usableIfOpen is usable for callers that must not open the store (the
// delivery workers): errStoreNotOpen when it is not open.
func (h *storeHandle) usableIfOpen() (*store.Store, error) {
	st := h.opened()
	if st == nil {
		return nil, errStoreNotOpen
	}
	return st, h.serviceable(st)
}

// serviceable checks an open store.
func (h *storeHandle) serviceable(st *store.Store) error {
	if st.DB().IsClosed() {
		return fmt.Errorf("echo3d_webhooks store %s was closed underneath; reload or restart Caddy to reopen it", h.describe())
	}
	if h.inMemory {
		return nil
	}
	min := h.minFree.Load()
	if min <= 0 {
		return nil
	}
	now := time.Now().UnixNano()
	if now < h.roomyUntil.Load() {
		return nil
	}
	free, ok := statFree(h.dir)
	if !ok || free >= uint64(min) {
		if ok && free/2 >= uint64(min) {
			h.roomyUntil.Store(now + int64(roomyFor))
		}
		return nil
	}
	return fmt.Errorf("disk nearly full: %s free on the file system of %s, below min_free_space %s "+
		"(Badger would crash Caddy by writing past the end of a full disk); free some space or lower min_free_space",
		humanize.IBytes(free), h.dir, humanize.IBytes(uint64(min)))
}
