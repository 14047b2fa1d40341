package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Errors returned (wrapped) by the store besides ErrNotFound.
var (
	// ErrExists is returned when creating a webhook whose ID is taken.
	ErrExists = errors.New("already exists")
	// ErrLocked is returned by Open when the directory is in use.
	ErrLocked = errors.New("store directory is locked")
	// ErrInvalidCursor is returned by ListAttempts for a cursor it did not
	// hand out.
	ErrInvalidCursor = errors.New("invalid cursor")
)

// DefaultRecordTTL is how long finished deliveries, their events and
// attempt records are kept when Options.RecordTTL is zero.
const DefaultRecordTTL = 7 * 24 * time.Hour

// sequenceBandwidth is how many sequence numbers Badger leases at a time.
const sequenceBandwidth = 1000

// maxConflictRetries bounds how often a transaction is retried on
// badger.ErrConflict.
const maxConflictRetries = 8

// Options configures Open.
type Options struct {
	// Dir is the Badger directory. It is created (0700) if missing and
	// ignored when InMemory is set.
	Dir string
	// InMemory keeps everything in memory; nothing survives Close.
	InMemory bool
	// Logger receives Badger's log lines; nil discards them.
	Logger badger.Logger
	// RecordTTL is how long finished deliveries, their events and attempt
	// records are kept; 0 means DefaultRecordTTL.
	RecordTTL time.Duration
	// SyncWrites makes every commit fsync, so that enqueued events survive
	// power loss and not only a process crash.
	SyncWrites bool
}

// Store is the webhook database. All methods are safe for concurrent use.
// Only one Store can be open per directory.
type Store struct {
	db        *badger.DB
	recordTTL time.Duration

	deliverySeq *badger.Sequence
	attemptSeq  *badger.Sequence

	// index is the in-memory view of all webhooks, replaced (never
	// modified) after each successful webhook write. webhookMu serializes
	// webhook writes so that the index follows the database's order.
	index     atomic.Pointer[webhookIndex]
	webhookMu sync.Mutex

	// health caches every stored Health; healthMu also serializes
	// SetHealth so that the cache follows the database's order.
	healthMu sync.RWMutex
	health   map[string]Health

	// bounds is the in-memory schedule: where each webhook's queue starts
	// and when its first delivery is due.
	bounds *bounds

	// leases are the deliveries handed out by ClaimDue.
	leases *leases

	// depth counts the queued deliveries.
	depth atomic.Int64

	// releaseMu serializes the changes of a stored event's pending count
	// (eventvalue.go): EnqueueDelivery adds one, a completion batch takes
	// one off per delivery it finishes and gives the event its TTL at 0.
	// A batch may take the count from a lease's copy instead of reading
	// it (see leases), so Badger's conflict detection would not catch
	// the two interleaving: EnqueueDelivery's new delivery would be lost
	// from the count.
	releaseMu sync.Mutex

	// completeCh hands Complete calls to the completer goroutine, which
	// commits them in batches until stopCh is closed, then closes
	// completerDone.
	completeCh    chan *completion
	stopCh        chan struct{}
	completerDone chan struct{}

	closeMu sync.Mutex
	closed  bool
}

// Open opens (creating if needed) the store described by opts.
func Open(opts Options) (*Store, error) {
	bopts := badger.DefaultOptions("")
	if opts.InMemory {
		bopts = bopts.WithInMemory(true)
	} else {
		if opts.Dir == "" {
			return nil, errors.New("opening store: no directory given")
		}
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating store directory: %w; make its parent writable by the user running Caddy, or set a different 'storage' directory", err)
		}
		bopts = bopts.WithDir(opts.Dir).WithValueDir(opts.Dir)
	}
	bopts = bopts.
		WithLogger(opts.Logger).
		WithSyncWrites(opts.SyncWrites).
		// 16 MiB memtables, a quarter of Badger's default: measured after a
		// 5 s /post saturation, Caddy's RSS was 280 MiB with them and 465
		// MiB with 64 MiB ones. The larger ones made a 100,000-delivery
		// drain about 25 % faster (the backlog stays out of level tables);
		// memory was judged the better buy for a sidecar. Smaller
		// value-log files let value-log GC reclaim space sooner.
		WithMemTableSize(16 << 20).
		WithBlockCacheSize(32 << 20).
		WithValueLogFileSize(64 << 20)

	db, err := badger.Open(bopts)
	if err != nil {
		if isLockError(err) {
			return nil, fmt.Errorf("%w: another Caddy process or config is using %s; stop it or set a different 'storage' directory",
				ErrLocked, opts.Dir)
		}
		return nil, fmt.Errorf("opening store at %s: %w; %s", opts.Dir, err, openFix(err))
	}

	s := &Store{
		db:            db,
		recordTTL:     opts.RecordTTL,
		bounds:        newBounds(),
		leases:        newLeases(),
		completeCh:    make(chan *completion),
		stopCh:        make(chan struct{}),
		completerDone: make(chan struct{}),
	}
	if s.recordTTL <= 0 {
		s.recordTTL = DefaultRecordTTL
	}
	go s.completer()
	if err := s.init(); err != nil {
		_ = s.Close()
		if opts.InMemory {
			return nil, err
		}
		return nil, fmt.Errorf("reading store at %s: %w; %s", opts.Dir, err, openFix(err))
	}
	return s, nil
}

// init acquires the sequences, loads the webhook index and health, brings
// the queue, events and age index up to date (migrating the layouts of
// earlier versions, releasing leases of a dead process, loading the
// schedule) and counts the queue.
func (s *Store) init() error {
	var err error
	s.deliverySeq, err = s.db.GetSequence([]byte(keyDeliverySeq), sequenceBandwidth)
	if err != nil {
		return fmt.Errorf("getting delivery sequence: %w", err)
	}
	s.attemptSeq, err = s.db.GetSequence([]byte(keyAttemptSeq), sequenceBandwidth)
	if err != nil {
		return fmt.Errorf("getting attempt sequence: %w", err)
	}
	hooks, err := s.loadWebhooks()
	if err != nil {
		return err
	}
	s.index.Store(newWebhookIndex(hooks))
	if err := s.loadHealth(); err != nil {
		return err
	}
	if err := s.migrateQueue(); err != nil {
		return err
	}
	if err := s.migrateEventMarkers(); err != nil {
		return err
	}
	if err := s.releaseLeases(time.Now()); err != nil {
		return err
	}
	if err := s.migrateAgeIndex(); err != nil {
		return err
	}
	if err := s.loadQueues(); err != nil {
		return err
	}
	n, err := s.countQueue()
	if err != nil {
		return err
	}
	s.depth.Store(n.total())
	s.leases.count(n)
	return nil
}

// openFix tells an operator how to get past a store that will not open.
func openFix(err error) string {
	if errors.Is(err, fs.ErrPermission) {
		return "make the directory and its files readable and writable by the user running Caddy, or set a different 'storage' directory"
	}
	return "if the directory is damaged, move it aside (Caddy then starts with an empty store) or restore it from a backup, or set a different 'storage' directory"
}

// isLockError reports whether err is Badger's directory-lock failure. Badger
// formats the underlying error into its message, so only the text is left to
// recognize it by.
func isLockError(err error) bool {
	return strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// Close releases the sequences and closes the database. It is safe to call
// more than once; calls after the first return nil. Every goroutine using
// the store must have stopped before.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.stopCh)
	<-s.completerDone

	var errs []error
	for _, seq := range []*badger.Sequence{s.deliverySeq, s.attemptSeq} {
		if seq == nil {
			continue
		}
		if err := seq.Release(); err != nil {
			errs = append(errs, fmt.Errorf("releasing sequence: %w", err))
		}
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing badger: %w", err))
	}
	return errors.Join(errs...)
}

// RunGC runs one value-log garbage collection pass: it rewrites value-log
// files while Badger finds one worth rewriting. It is a no-op for an
// in-memory store or after Close. Close waits for a running pass.
func (s *Store) RunGC() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	for {
		err := s.db.RunValueLogGC(0.5)
		switch {
		case err == nil:
			continue
		case errors.Is(err, badger.ErrNoRewrite),
			errors.Is(err, badger.ErrRejected),
			errors.Is(err, badger.ErrGCInMemoryMode):
			return nil
		default:
			return fmt.Errorf("value-log GC: %w", err)
		}
	}
}

// DB returns the underlying database, for tests and diagnostics. Writing to
// it directly bypasses the webhook index.
func (s *Store) DB() *badger.DB { return s.db }

// update runs fn in a read-write transaction, retrying on conflict. fn must
// reset any state it captures, since it may run more than once.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	var err error
	for range maxConflictRetries {
		err = s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return err
}
