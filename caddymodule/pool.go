package caddymodule

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// stores holds one *storeHandle per Badger directory (or one for the
// in-memory store), shared by every config that uses it. Caddy provisions a
// new config before it cleans up the old one, and Badger allows one open per
// directory, so the database must outlive any single config.
var stores = caddy.NewUsagePool()

// memoryKey is the pool key of the process-wide in-memory store.
const memoryKey = "memory"

// gcInterval is how often the value-log GC runs on an open store.
const gcInterval = 10 * time.Minute

// storeHandle opens its Badger database lazily, on first use, so that
// `caddy validate` (which provisions but never starts) does not take the
// directory lock of a running server.
type storeHandle struct {
	dir      string
	inMemory bool
	logger   *zap.Logger
	// minFree is the free disk space below which the store is not used
	// (see usable); set by every config sharing the handle, the last wins.
	minFree atomic.Int64
	// roomyUntil (Unix nanoseconds) is when serviceable reads the free
	// space again, after a reading with room to spare (see roomyFor).
	roomyUntil atomic.Int64

	mu     sync.Mutex
	st     *store.Store
	closed bool
	stopGC chan struct{}
	gcDone chan struct{}
}

// open returns the database, opening it on the first call. A failed open is
// not cached: the next call tries again (the lock may have been released).
func (h *storeHandle) open() (*store.Store, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st != nil {
		return h.st, nil
	}
	if h.closed {
		return nil, fmt.Errorf("echo3d_webhooks store %s is closed", h.describe())
	}
	st, err := store.Open(store.Options{
		Dir:      h.dir,
		InMemory: h.inMemory,
		Logger:   badgerLogger{h.logger.Named("badger").Sugar()},
	})
	if err != nil {
		return nil, err
	}
	h.st = st
	h.stopGC = make(chan struct{})
	h.gcDone = make(chan struct{})
	go h.runGC(st, h.stopGC, h.gcDone)
	if c := h.logger.Check(zap.InfoLevel, "opened webhook store"); c != nil {
		c.Write(zap.String("storage", h.describe()))
	}
	return st, nil
}

// opened returns the database if it is already open, without opening it.
func (h *storeHandle) opened() *store.Store {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st
}

func (h *storeHandle) describe() string {
	if h.inMemory {
		return memoryKey
	}
	return h.dir
}

// runGC reclaims value-log space periodically until stop is closed.
func (h *storeHandle) runGC(st *store.Store, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	defer func() {
		if r := recover(); r != nil {
			h.logger.Error("panic in webhook store GC loop", zap.Any("panic", r), zap.Stack("stack"))
		}
	}()
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := st.RunGC(); err != nil {
				h.logger.Warn("value-log GC", zap.String("storage", h.describe()), zap.Error(err))
			}
		}
	}
}

// Destruct closes the database once the last config using it is gone.
func (h *storeHandle) Destruct() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.st == nil {
		return nil
	}
	close(h.stopGC)
	<-h.gcDone
	err := h.st.Close()
	h.st = nil
	if err != nil {
		return fmt.Errorf("closing echo3d_webhooks store %s: %w", h.describe(), err)
	}
	return nil
}

// badgerLogger adapts zap to Badger's logger, demoting Badger's chatty Info
// lines to Debug.
type badgerLogger struct{ s *zap.SugaredLogger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.s.Errorf(f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.s.Warnf(f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.s.Debugf(f, a...) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.s.Debugf(f, a...) }

// Interface guard
var _ caddy.Destructor = (*storeHandle)(nil)
