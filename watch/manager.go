// Package watch follows uploaded echo3D entries that are still being
// processed, until processing is seen to finish (then a Processed event is
// emitted), the entry is deleted, or a deadline passes.
//
// An /upload made with noProcessingWait=true, or a waited one whose response
// does not show the entry processed yet, is answered before echo3D has
// finished with the asset. The Manager then learns the outcome two ways:
//
//   - polling: each watch is polled (through Hooks.Poll) on a schedule that
//     starts at Settings.FirstInterval after the upload and doubles up to
//     Settings.MaxInterval, with ±20 % jitter, until Settings.GiveUp after the
//     upload;
//   - passive detection: any /query response the proxy sees is handed to
//     Observe, and a watched entry shown processed there resolves at once.
//
// Watches are bounded (Settings.MaxWatches; beyond it the oldest gives up)
// and persisted through a Store, without credentials, so that after a
// restart they still resolve passively and resume polling when the caller
// can supply credentials again. The package knows nothing about Caddy or
// HTTP: the caller provides the Hooks that poll, emit and clean up.
package watch

import (
	"container/heap"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// Watch is what is known about one watched entry and what is persisted:
// no credentials.
type Watch = store.Watch

// Store persists watches; *store.Store implements it. It is never given a
// credential.
type Store interface {
	// PutWatch creates or replaces a watch.
	PutWatch(w Watch) error
	// DeleteWatch removes a watch; a missing one is not an error.
	DeleteWatch(id string) error
	// Watches returns every stored watch, oldest first.
	Watches() ([]Watch, error)
}

// ErrCannotPoll is returned (possibly wrapped) by Hooks.Poll when no poll
// can be made now: no credentials are known for the watch, or no request
// has shown yet how to reach the upstream. Such a watch is not counted as
// polled; it keeps its schedule and deadline, still resolves passively,
// and Resume makes it try again at once.
var ErrCannotPoll = errors.New("cannot poll yet")

// Hooks connect the Manager to the world. Their methods are called from
// the Manager's goroutines and from the callers of Observe, concurrently.
type Hooks interface {
	// Poll asks the upstream whether w's entry is processed. An error other
	// than ErrCannotPoll counts as a failed poll and is retried on the
	// schedule.
	Poll(ctx context.Context, w Watch) (processed bool, err error)
	// Emit makes the Processed event of w durable. On error the watch is
	// kept and resolves again on its next poll or observation.
	Emit(w Watch) error
	// Ended is called once when a watch leaves the Manager, for any
	// reason, after its record was deleted from the Store: the place to
	// drop credentials and count give-ups.
	Ended(w Watch, reason Reason)
}

// Reason says why a watch ended.
type Reason string

// The reasons a watch ends.
const (
	// ProcessedByPoll: a poll showed the entry processed; Processed was
	// emitted.
	ProcessedByPoll Reason = "processed_poll"
	// ProcessedPassive: a /query response that passed through showed the
	// entry processed; Processed was emitted.
	ProcessedPassive Reason = "processed_passive"
	// Deleted: a Delete of the entry was seen; no Processed.
	Deleted Reason = "deleted"
	// GaveUp: the deadline passed; no Processed.
	GaveUp Reason = "gave_up"
	// Evicted: the bound on watches was reached and this was the oldest;
	// no Processed.
	Evicted Reason = "evicted"
)

// Stats counts what the Manager did since it was created.
type Stats struct {
	// Active is the number of watches kept now.
	Active int
	// Polls counts the polls made (not those that could not be made).
	Polls uint64
	// PollErrors counts the polls that failed (upstream error, non-2xx,
	// entry missing from the answer).
	PollErrors uint64
	// ProcessedByPoll, ProcessedPassive, Deleted, GaveUp and Evicted count
	// the watches that ended for each reason.
	ProcessedByPoll, ProcessedPassive, Deleted, GaveUp, Evicted uint64
	// EmitErrors counts the failed attempts to emit Processed.
	EmitErrors uint64
	// StoreErrors counts the failed writes to the Store (the watch is kept
	// in memory regardless).
	StoreErrors uint64
}

// Config configures New.
type Config struct {
	// Hooks poll, emit and clean up; required.
	Hooks Hooks
	// Store persists watches; nil keeps them in memory only.
	Store Store
	// Settings are the initial settings (defaults applied).
	Settings Settings
	// Logger receives warnings (give-ups, evictions, store errors) and debug
	// lines; nil discards them. Log fields hold collection keys and entry
	// ids only.
	Logger *zap.Logger
	// Concurrency bounds the polls in flight. Default: 4.
	Concurrency int
	// PollTimeout bounds one poll. Default: 30s.
	PollTimeout time.Duration
	// Now is the clock for ages and deadlines; nil means time.Now. Timers
	// are real.
	Now func() time.Time
	// Rand returns a number in [0, 1) for jitter; nil means math/rand/v2.
	Rand func() float64
}

// Defaults of Config.
const (
	defaultConcurrency = 4
	defaultPollTimeout = 30 * time.Second
)

// Manager keeps the watches. Its methods are safe for concurrent use.
type Manager struct {
	hooks       Hooks
	store       Store
	concurrency int
	pollTimeout time.Duration
	now         func() time.Time
	rand        func() float64
	logger      atomic.Pointer[zap.Logger]

	mu       sync.Mutex
	settings Settings
	byID     map[string]*item
	byKey    map[string]map[string]*item // apiKey → entryID → item
	queue    queue
	inFlight int
	stats    Stats
	count    atomic.Int64 // len(byID), read without the lock
	started  bool
	closed   bool

	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	polls  sync.WaitGroup
	done   chan struct{}
}

// item is one watch and its scheduling state, guarded by Manager.mu.
type item struct {
	w        Watch
	due      time.Time // next poll, or the deadline when sooner
	index    int       // position in the queue; -1 when not queued
	polling  bool      // a poll is in flight
	emitting bool      // Processed is being emitted
	stalled  bool      // the last poll could not be made
	gone     bool      // removed from the Manager
}

// New returns a Manager that does nothing until Start.
func New(cfg Config) *Manager {
	if cfg.Hooks == nil {
		panic("watch: Config.Hooks is nil")
	}
	m := &Manager{
		hooks:       cfg.Hooks,
		store:       cfg.Store,
		concurrency: cfg.Concurrency,
		pollTimeout: cfg.PollTimeout,
		now:         cfg.Now,
		rand:        cfg.Rand,
		settings:    cfg.Settings.WithDefaults(),
		byID:        map[string]*item{},
		byKey:       map[string]map[string]*item{},
		wake:        make(chan struct{}, 1),
		done:        make(chan struct{}),
	}
	if m.concurrency <= 0 {
		m.concurrency = defaultConcurrency
	}
	if m.pollTimeout <= 0 {
		m.pollTimeout = defaultPollTimeout
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.rand == nil {
		m.rand = rand.Float64
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.SetLogger(cfg.Logger)
	return m
}

// SetLogger replaces the logger (nil discards).
func (m *Manager) SetLogger(l *zap.Logger) {
	if l == nil {
		l = zap.NewNop()
	}
	m.logger.Store(l)
}

// SetSettings replaces the settings (defaults applied). New intervals apply
// from each watch's next poll and a new give-up time to new watches; a lower
// MaxWatches makes the oldest watches give up at once.
func (m *Manager) SetSettings(s Settings) {
	m.mu.Lock()
	m.settings = s.WithDefaults()
	evicted := m.evictLocked(0)
	m.mu.Unlock()
	m.endAll(evicted, Evicted)
}

// Start starts the scheduler. Calling it again does nothing.
func (m *Manager) Start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.closed {
		return
	}
	m.started = true
	go m.run()
}

// Close stops the scheduler, cancels the polls in flight and waits for
// them. Watches stay in the Store. Calling it again does nothing.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	started := m.started
	m.mu.Unlock()
	m.cancel()
	if started {
		<-m.done
	}
	m.polls.Wait()
}

// Load adds the watches found in the Store, for instance after a restart.
// Those past their deadline give up at once (with a warning); the others
// continue their schedule where their age puts it. Watches already kept are
// skipped.
func (m *Manager) Load() error {
	if m.store == nil {
		return nil
	}
	stored, err := m.store.Watches()
	if err != nil {
		return err
	}
	now := m.now()
	var expired, evicted []*item
	m.mu.Lock()
	for _, w := range stored {
		if _, ok := m.byID[w.ID]; ok || m.watchedLocked(w.APIKey, w.EntryID) != nil {
			continue
		}
		it := &item{w: w, index: -1}
		if !now.Before(w.Deadline) {
			it.gone = true
			m.stats.GaveUp++
			expired = append(expired, it)
			continue
		}
		m.insertLocked(it)
		m.scheduleLocked(it, now)
	}
	evicted = m.evictLocked(0)
	m.mu.Unlock()
	m.endAll(expired, GaveUp)
	m.endAll(evicted, Evicted)
	m.kick()
	return nil
}

// Add starts watching w.APIKey's entry w.EntryID; w.ID must be unique and
// w.Host is kept for the Hooks. CreatedAt and Deadline are set here. It
// returns the watch as kept and false, without change, when that entry is
// already watched. When the bound is reached the oldest watch gives up
// first. A Store error is returned but the watch is kept in memory.
func (m *Manager) Add(w Watch) (Watch, bool, error) {
	now := m.now()
	m.mu.Lock()
	if old := m.watchedLocked(w.APIKey, w.EntryID); old != nil {
		w = old.w
		m.mu.Unlock()
		return w, false, nil
	}
	if _, dup := m.byID[w.ID]; dup || m.closed {
		m.mu.Unlock()
		return w, false, nil
	}
	w.CreatedAt = now
	w.Deadline = now.Add(m.settings.GiveUp)
	evicted := m.evictLocked(1)
	it := &item{w: w, index: -1}
	m.insertLocked(it)
	m.scheduleLocked(it, now)
	m.mu.Unlock()

	m.endAll(evicted, Evicted)
	var err error
	if m.store != nil {
		if err = m.store.PutWatch(w); err != nil {
			m.countStoreError()
			m.log().Warn("could not persist watch; it will not survive a restart",
				zap.String("api_key", w.APIKey), zap.String("entry_id", w.EntryID), zap.Error(err))
		}
	}
	m.kick()
	return w, true, err
}

// Watching reports whether any entry of the collection apiKey is watched.
func (m *Manager) Watching(apiKey string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.byKey[apiKey]) > 0
}

// Len returns the number of watches kept. It takes no lock, so a caller
// on the request path can check it for free.
func (m *Manager) Len() int {
	return int(m.count.Load())
}

// Forget ends the watches of the given entries of apiKey without Processed,
// because they were deleted. It returns how many ended.
func (m *Manager) Forget(apiKey string, entryIDs []string) int {
	var ended []*item
	m.mu.Lock()
	for _, id := range entryIDs {
		if it := m.watchedLocked(apiKey, id); it != nil {
			m.removeLocked(it, Deleted)
			ended = append(ended, it)
		}
	}
	m.mu.Unlock()
	m.endAll(ended, Deleted)
	return len(ended)
}

// Resume makes the watches whose last poll could not be made poll at once,
// for instance once the Hooks can reach the upstream again.
func (m *Manager) Resume() {
	m.mu.Lock()
	now := m.now()
	n := 0
	for _, it := range m.byID {
		if it.stalled && it.index >= 0 {
			it.stalled = false
			it.due = now
			heap.Fix(&m.queue, it.index)
			n++
		}
	}
	m.mu.Unlock()
	if n > 0 {
		m.kick()
	}
}

// Watches returns a snapshot of the watches kept, in no order.
func (m *Manager) Watches() []Watch {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Watch, 0, len(m.byID))
	for _, it := range m.byID {
		out = append(out, it.w)
	}
	return out
}

// Stats returns the counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Active = len(m.byID)
	return s
}

// watchedLocked returns the live item of apiKey's entryID, or nil.
func (m *Manager) watchedLocked(apiKey, entryID string) *item {
	return m.byKey[apiKey][entryID]
}

// insertLocked indexes a new item (not yet queued).
func (m *Manager) insertLocked(it *item) {
	m.byID[it.w.ID] = it
	m.count.Store(int64(len(m.byID)))
	entries := m.byKey[it.w.APIKey]
	if entries == nil {
		entries = map[string]*item{}
		m.byKey[it.w.APIKey] = entries
	}
	entries[it.w.EntryID] = it
}

// removeLocked takes it out of the indexes and the queue and counts why.
func (m *Manager) removeLocked(it *item, reason Reason) {
	if it.gone {
		return
	}
	it.gone = true
	delete(m.byID, it.w.ID)
	m.count.Store(int64(len(m.byID)))
	if entries := m.byKey[it.w.APIKey]; entries != nil {
		delete(entries, it.w.EntryID)
		if len(entries) == 0 {
			delete(m.byKey, it.w.APIKey)
		}
	}
	if it.index >= 0 {
		heap.Remove(&m.queue, it.index)
	}
	switch reason {
	case ProcessedByPoll:
		m.stats.ProcessedByPoll++
	case ProcessedPassive:
		m.stats.ProcessedPassive++
	case Deleted:
		m.stats.Deleted++
	case GaveUp:
		m.stats.GaveUp++
	case Evicted:
		m.stats.Evicted++
	}
}

// evictLocked removes the oldest watches until room more fit under the
// bound, and returns them. Watches emitting Processed are passed over.
func (m *Manager) evictLocked(room int) []*item {
	var out []*item
	for len(m.byID)+room > m.settings.MaxWatches {
		var oldest *item
		for _, it := range m.byID {
			if it.emitting {
				continue
			}
			if oldest == nil || it.w.CreatedAt.Before(oldest.w.CreatedAt) ||
				(it.w.CreatedAt.Equal(oldest.w.CreatedAt) && it.w.ID < oldest.w.ID) {
				oldest = it
			}
		}
		if oldest == nil {
			break
		}
		m.removeLocked(oldest, Evicted)
		out = append(out, oldest)
	}
	return out
}

// scheduleLocked queues it for its next poll, or for its deadline when
// that comes first.
func (m *Manager) scheduleLocked(it *item, now time.Time) {
	d := jitter(m.settings.Interval(now.Sub(it.w.CreatedAt)), m.rand())
	it.due = now.Add(d)
	if it.due.After(it.w.Deadline) {
		it.due = it.w.Deadline
	}
	if it.index >= 0 {
		heap.Fix(&m.queue, it.index)
		return
	}
	heap.Push(&m.queue, it)
}

// endAll finishes watches already removed: deletes their records, tells
// the Hooks and logs.
func (m *Manager) endAll(items []*item, reason Reason) {
	for _, it := range items {
		m.end(it.w, reason)
	}
}

// end finishes one removed watch: deletes its record, logs, and tells the
// Hooks last.
func (m *Manager) end(w Watch, reason Reason) {
	if m.store != nil {
		if err := m.store.DeleteWatch(w.ID); err != nil {
			m.countStoreError()
			m.log().Warn("could not delete watch record; it expires a day after its deadline",
				zap.String("api_key", w.APIKey), zap.String("entry_id", w.EntryID), zap.Error(err))
		}
	}
	log := m.log()
	switch reason {
	case GaveUp:
		log.Warn("gave up waiting for an uploaded entry to be processed; no Processed event",
			zap.String("api_key", w.APIKey), zap.String("entry_id", w.EntryID),
			zap.Time("uploaded", w.CreatedAt), zap.Time("deadline", w.Deadline))
	case Evicted:
		log.Warn("too many entries waiting for processing: gave up on the oldest; no Processed event",
			zap.String("api_key", w.APIKey), zap.String("entry_id", w.EntryID),
			zap.Time("uploaded", w.CreatedAt), zap.Int("max_watches", m.maxWatches()))
	default:
		if c := log.Check(zapcore.DebugLevel, "watch ended"); c != nil {
			c.Write(zap.String("api_key", w.APIKey), zap.String("entry_id", w.EntryID), zap.String("reason", string(reason)))
		}
	}
	m.hooks.Ended(w, reason)
}

func (m *Manager) maxWatches() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.settings.MaxWatches
}

func (m *Manager) countStoreError() {
	m.mu.Lock()
	m.stats.StoreErrors++
	m.mu.Unlock()
}

func (m *Manager) log() *zap.Logger { return m.logger.Load() }

// kick wakes the scheduler.
func (m *Manager) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// resolve emits Processed for it and ends it. It returns false when
// another caller got there first, the watch has ended, or Emit failed (the
// watch is then kept).
func (m *Manager) resolve(it *item, reason Reason) bool {
	m.mu.Lock()
	if it.gone || it.emitting {
		m.mu.Unlock()
		return false
	}
	it.emitting = true
	m.mu.Unlock()

	err := m.hooks.Emit(it.w)

	m.mu.Lock()
	it.emitting = false
	if err != nil {
		m.stats.EmitErrors++
		if !it.gone && !it.polling && it.index < 0 {
			m.scheduleLocked(it, m.now())
		}
		m.mu.Unlock()
		m.log().Error("could not emit Processed; will try again",
			zap.String("api_key", it.w.APIKey), zap.String("entry_id", it.w.EntryID), zap.Error(err))
		m.kick()
		return false
	}
	if it.gone {
		// Ended meanwhile (deleted or evicted) and already cleaned up.
		m.mu.Unlock()
		return true
	}
	m.removeLocked(it, reason)
	m.mu.Unlock()
	m.end(it.w, reason)
	return true
}

// run is the scheduler: it starts the polls that are due, gives up the
// watches whose deadline passed, and sleeps until the next is due.
func (m *Manager) run() {
	defer close(m.done)
	defer func() {
		if r := recover(); r != nil {
			m.log().Error("panic in watch scheduler; polling stopped, passive detection continues",
				zap.Any("panic", r), zap.Stack("stack"))
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var expired, polls []*item
		m.mu.Lock()
		now := m.now()
		for m.queue.Len() > 0 {
			it := m.queue[0]
			if it.due.After(now) {
				break
			}
			if !now.Before(it.w.Deadline) {
				if it.emitting {
					heap.Pop(&m.queue) // resolve queues it again if Emit fails
					continue
				}
				m.removeLocked(it, GaveUp)
				expired = append(expired, it)
				continue
			}
			if m.inFlight >= m.concurrency {
				break
			}
			heap.Pop(&m.queue)
			if it.emitting {
				continue
			}
			it.polling = true
			m.inFlight++
			polls = append(polls, it)
		}
		wait := time.Duration(-1)
		if m.queue.Len() > 0 && (m.inFlight < m.concurrency || m.queue[0].due.After(now)) {
			wait = max(m.queue[0].due.Sub(now), 0)
		}
		m.polls.Add(len(polls))
		m.mu.Unlock()

		m.endAll(expired, GaveUp)
		for _, it := range polls {
			go m.poll(it)
		}
		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-m.ctx.Done():
			return
		case <-m.wake:
		case <-timer.C:
		}
	}
}

// poll makes one poll of it and acts on the answer.
func (m *Manager) poll(it *item) {
	defer m.polls.Done()
	defer m.kick()
	ctx, cancel := context.WithTimeout(m.ctx, m.pollTimeout)
	processed, err := m.safePoll(ctx, it.w)
	cancel()

	m.mu.Lock()
	it.polling = false
	m.inFlight--
	cannot := errors.Is(err, ErrCannotPoll)
	if !cannot {
		m.stats.Polls++
		if err != nil {
			m.stats.PollErrors++
		}
	}
	if it.gone || m.closed {
		m.mu.Unlock()
		return
	}
	if err == nil && processed {
		m.mu.Unlock()
		m.resolve(it, ProcessedByPoll)
		return
	}
	it.stalled = cannot
	if !it.emitting {
		m.scheduleLocked(it, m.now())
	}
	m.mu.Unlock()
	if err != nil && !cannot {
		if c := m.log().Check(zapcore.DebugLevel, "poll for processing failed"); c != nil {
			c.Write(zap.String("api_key", it.w.APIKey), zap.String("entry_id", it.w.EntryID), zap.Error(err))
		}
	}
}

// safePoll calls Hooks.Poll, turning a panic into an error.
func (m *Manager) safePoll(ctx context.Context, w Watch) (processed bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			m.log().Error("panic while polling", zap.Any("panic", r), zap.Stack("stack"))
			processed, err = false, errors.New("poll panicked")
		}
	}()
	return m.hooks.Poll(ctx, w)
}

// queue is a min-heap of items by due time.
type queue []*item

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index = i
	q[j].index = j
}
func (q *queue) Push(x any) {
	it := x.(*item)
	it.index = len(*q)
	*q = append(*q, it)
}
func (q *queue) Pop() any {
	old := *q
	n := len(old)
	it := old[n-1]
	old[n-1] = nil
	it.index = -1
	*q = old[:n-1]
	return it
}

// Interface guard
var _ heap.Interface = (*queue)(nil)
