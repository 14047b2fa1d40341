package watch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// within bounds every wait in these tests.
const within = 5 * time.Second

// memStore is a Store in memory that can be made to fail.
type memStore struct {
	mu   sync.Mutex
	m    map[string]Watch
	fail error
}

func newMemStore(ws ...Watch) *memStore {
	s := &memStore{m: map[string]Watch{}}
	for _, w := range ws {
		s.m[w.ID] = w
	}
	return s
}

func (s *memStore) PutWatch(w Watch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.m[w.ID] = w
	return nil
}

func (s *memStore) DeleteWatch(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	delete(s.m, id)
	return nil
}

func (s *memStore) Watches() ([]Watch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.m))
	slices.SortFunc(out, func(a, b Watch) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func (s *memStore) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.m))
}

// ended is one Hooks.Ended call.
type ended struct {
	id     string
	reason Reason
}

// fakeHooks answers polls from a table of processed entries and records
// what the Manager asks.
type fakeHooks struct {
	mu        sync.Mutex
	processed map[string]bool // entry id → processed
	cannot    bool            // Poll returns ErrCannotPoll
	pollErr   error
	emitErr   []error // consumed one per Emit
	polls     map[string]int
	emitted   []string
	inFlight  int
	maxFlight int
	block     chan struct{} // when set, Poll waits for it (or ctx)

	polled chan string // entry id of every finished poll
	ends   chan ended
}

func newHooks() *fakeHooks {
	return &fakeHooks{
		processed: map[string]bool{},
		polls:     map[string]int{},
		polled:    make(chan string, 1000),
		ends:      make(chan ended, 1000),
	}
}

func (h *fakeHooks) Poll(ctx context.Context, w Watch) (bool, error) {
	h.mu.Lock()
	h.inFlight++
	h.maxFlight = max(h.maxFlight, h.inFlight)
	block := h.block
	h.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inFlight--
	defer func() { h.polled <- w.EntryID }()
	if h.cannot {
		return false, fmt.Errorf("no route: %w", ErrCannotPoll)
	}
	h.polls[w.EntryID]++
	if h.pollErr != nil {
		return false, h.pollErr
	}
	return h.processed[w.EntryID], ctx.Err()
}

func (h *fakeHooks) Emit(w Watch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.emitErr) > 0 {
		err := h.emitErr[0]
		h.emitErr = h.emitErr[1:]
		if err != nil {
			return err
		}
	}
	h.emitted = append(h.emitted, w.EntryID)
	return nil
}

func (h *fakeHooks) Ended(w Watch, reason Reason) {
	h.ends <- ended{w.ID, reason}
}

func (h *fakeHooks) set(f func(h *fakeHooks)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

func (h *fakeHooks) emittedIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.emitted)
}

func (h *fakeHooks) pollCount(entry string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.polls[entry]
}

// waitEnd waits for the next Ended call.
func (h *fakeHooks) waitEnd(t *testing.T) ended {
	t.Helper()
	select {
	case e := <-h.ends:
		return e
	case <-time.After(within):
		t.Fatal("no watch ended")
		return ended{}
	}
}

// waitPolls waits until entry was polled n times.
func (h *fakeHooks) waitPolls(t *testing.T, entry string, n int) {
	t.Helper()
	deadline := time.After(within)
	for h.pollCount(entry) < n {
		select {
		case <-h.polled:
		case <-deadline:
			t.Fatalf("entry %s polled %d times, want %d", entry, h.pollCount(entry), n)
		}
	}
}

// noEnd fails if a watch ends within d.
func (h *fakeHooks) noEnd(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case e := <-h.ends:
		t.Fatalf("watch %s ended (%s), want it kept", e.id, e.reason)
	case <-time.After(d):
	}
}

// newManager starts a Manager with fast settings and stops it at the end.
func newManager(t *testing.T, h *fakeHooks, st Store, s Settings, logger *zap.Logger) *Manager {
	t.Helper()
	m := New(Config{Hooks: h, Store: st, Settings: s, Logger: logger, PollTimeout: time.Second})
	t.Cleanup(m.Close)
	m.Start()
	return m
}

func watchOf(id, key, entry string) Watch { return Watch{ID: id, APIKey: key, EntryID: entry} }

func add(t *testing.T, m *Manager, w Watch) Watch {
	t.Helper()
	got, added, err := m.Add(w)
	if err != nil || !added {
		t.Fatalf("Add(%s) = %v, %v", w.ID, added, err)
	}
	return got
}

// queryBody is a /query answer listing entries, processed or not.
func queryBody(key string, entries map[string]bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"apiKey":%q,"db":{`, key)
	i := 0
	for _, id := range slices.Sorted(maps.Keys(entries)) {
		if i > 0 {
			b.WriteByte(',')
		}
		i++
		data := `{"createdAt":"1"}`
		if entries[id] {
			data = `{"createdAt":"1","glbHologramStorageID":"s.glb"}`
		}
		fmt.Fprintf(&b, `%q:{"id":%q,"hologram":{"type":"MODEL_HOLOGRAM"},"additionalData":%s}`, id, id, data)
	}
	b.WriteString("}}")
	return []byte(b.String())
}

func TestInterval(t *testing.T) {
	s := Settings{FirstInterval: 10 * time.Second, MaxInterval: time.Minute}.WithDefaults()
	for _, tc := range []struct {
		age, want time.Duration
	}{
		{-time.Second, 10 * time.Second},
		{0, 10 * time.Second},
		{10 * time.Second, 20 * time.Second},
		{30 * time.Second, 40 * time.Second},
		{55 * time.Second, time.Minute},
		{time.Hour, time.Minute},
		{1<<63 - 1, time.Minute},
	} {
		if got := s.Interval(tc.age); got != tc.want {
			t.Errorf("Interval(%s) = %s, want %s", tc.age, got, tc.want)
		}
	}
	// Poll times from age 0 double the interval: f, 3f, 7f, 15f.
	s = Settings{FirstInterval: time.Second, MaxInterval: time.Hour}.WithDefaults()
	var at time.Duration
	var times []time.Duration
	for range 4 {
		at += s.Interval(at)
		times = append(times, at)
	}
	if want := []time.Duration{time.Second, 3 * time.Second, 7 * time.Second, 15 * time.Second}; !slices.Equal(times, want) {
		t.Errorf("poll times %v, want %v", times, want)
	}
}

func TestJitter(t *testing.T) {
	for _, tc := range []struct {
		r    float64
		want time.Duration
	}{{0, 80 * time.Second}, {0.5, 100 * time.Second}, {0.999999, 120 * time.Second}} {
		if got := jitter(100*time.Second, tc.r); got.Round(time.Second) != tc.want {
			t.Errorf("jitter(100s, %v) = %s, want %s", tc.r, got, tc.want)
		}
	}
}

func TestSettings(t *testing.T) {
	d := Settings{}.WithDefaults()
	if d != (Settings{DefaultFirstInterval, DefaultMaxInterval, DefaultGiveUp, DefaultMaxWatches}) {
		t.Errorf("defaults = %+v", d)
	}
	if got := (Settings{FirstInterval: time.Minute, MaxInterval: time.Second}).WithDefaults(); got.MaxInterval != time.Minute {
		t.Errorf("max interval below first: got %s, want it raised to %s", got.MaxInterval, time.Minute)
	}
	for name, s := range map[string]Settings{
		"first":   {FirstInterval: -1},
		"max":     {MaxInterval: -1},
		"give up": {GiveUp: -1},
		"watches": {MaxWatches: -1},
	} {
		if err := s.Validate(); err == nil {
			t.Errorf("%s: negative value accepted", name)
		}
	}
	if err := (Settings{}).Validate(); err != nil {
		t.Errorf("zero settings: %v", err)
	}
}

// TestPollPath: a watch is polled with backoff until the entry shows
// processed, then Processed is emitted once and the record deleted.
func TestPollPath(t *testing.T) {
	h := newHooks()
	st := newMemStore()
	m := newManager(t, h, st, Settings{FirstInterval: 5 * time.Millisecond, MaxInterval: 10 * time.Millisecond}, nil)
	w := add(t, m, watchOf("w1", "k", "e1"))
	if w.CreatedAt.IsZero() || w.Deadline.Sub(w.CreatedAt) != DefaultGiveUp {
		t.Errorf("Add did not set CreatedAt/Deadline: %+v", w)
	}
	if ids := st.ids(); !slices.Equal(ids, []string{"w1"}) {
		t.Fatalf("stored %v, want [w1]", ids)
	}
	h.waitPolls(t, "e1", 3)
	if got := h.emittedIDs(); len(got) != 0 {
		t.Fatalf("emitted %v while the entry was pending", got)
	}
	h.set(func(h *fakeHooks) { h.processed["e1"] = true })
	if e := h.waitEnd(t); e != (ended{"w1", ProcessedByPoll}) {
		t.Errorf("ended %+v, want w1 processed by poll", e)
	}
	if got := h.emittedIDs(); !slices.Equal(got, []string{"e1"}) {
		t.Errorf("emitted %v, want [e1]", got)
	}
	if ids := st.ids(); len(ids) != 0 {
		t.Errorf("records left after resolution: %v", ids)
	}
	s := m.Stats()
	if s.Active != 0 || s.ProcessedByPoll != 1 || s.Polls < 4 {
		t.Errorf("stats %+v", s)
	}
}

// TestPassivePath: a /query body that shows the entry processed resolves
// the watch at once, without a poll; unprocessed entries, other
// collections and garbage resolve nothing.
func TestPassivePath(t *testing.T) {
	h := newHooks()
	m := newManager(t, h, newMemStore(), Settings{FirstInterval: time.Hour}, nil)
	add(t, m, watchOf("w1", "k", "e1"))
	add(t, m, watchOf("w2", "k", "e2"))

	for name, tc := range map[string]struct {
		key  string
		body []byte
	}{
		"pending":          {"k", queryBody("k", map[string]bool{"e1": false, "e2": false})},
		"other collection": {"other", queryBody("other", map[string]bool{"e1": true})},
		"not json":         {"k", []byte(`Entry not found`)},
		"truncated":        {"k", queryBody("k", map[string]bool{"e1": true})[:60]},
	} {
		if n := m.Observe(tc.key, tc.body); n != 0 {
			t.Errorf("%s: resolved %d", name, n)
		}
	}
	if n := m.Observe("k", queryBody("k", map[string]bool{"e1": true, "e2": false, "x": true})); n != 1 {
		t.Fatalf("resolved %d, want 1", n)
	}
	if e := h.waitEnd(t); e != (ended{"w1", ProcessedPassive}) {
		t.Errorf("ended %+v", e)
	}
	if n := m.Observe("k", queryBody("k", map[string]bool{"e1": true})); n != 0 {
		t.Errorf("a resolved watch resolved again (%d)", n)
	}
	if got := h.emittedIDs(); !slices.Equal(got, []string{"e1"}) {
		t.Errorf("emitted %v, want [e1]", got)
	}
	if h.pollCount("e1")+h.pollCount("e2") != 0 {
		t.Error("polled although the first poll is an hour away")
	}
	if !m.Watching("k") || m.Watching("other") || m.Len() != 1 {
		t.Errorf("Watching(k)=%v Watching(other)=%v Len=%d", m.Watching("k"), m.Watching("other"), m.Len())
	}
}

// TestPassiveManyWatches covers the single-pass walk used when a
// collection has more watches than are looked up one by one.
func TestPassiveManyWatches(t *testing.T) {
	h := newHooks()
	m := newManager(t, h, nil, Settings{FirstInterval: time.Hour}, nil)
	listing := map[string]bool{}
	for i := range 3 * lookupMax {
		id := fmt.Sprintf("e%02d", i)
		add(t, m, watchOf("w"+id, "k", id))
		listing[id] = i%3 == 0
	}
	if n := m.Observe("k", queryBody("k", listing)); n != lookupMax {
		t.Errorf("resolved %d, want %d", n, lookupMax)
	}
	if n := m.Observe("k", []byte(`{"db":{"e01":`)); n != 0 {
		t.Errorf("invalid JSON resolved %d", n)
	}
	if m.Len() != 2*lookupMax {
		t.Errorf("Len = %d, want %d", m.Len(), 2*lookupMax)
	}
}

// TestGiveUpPath: a watch that never sees its entry processed ends at its
// deadline with a warning, a count and no Processed.
func TestGiveUpPath(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	h := newHooks()
	st := newMemStore()
	m := newManager(t, h, st, Settings{FirstInterval: 5 * time.Millisecond, MaxInterval: 10 * time.Millisecond, GiveUp: 300 * time.Millisecond}, zap.New(core))
	add(t, m, watchOf("w1", "k", "e1"))
	if e := h.waitEnd(t); e != (ended{"w1", GaveUp}) {
		t.Fatalf("ended %+v, want w1 gave up", e)
	}
	if h.pollCount("e1") < 2 {
		t.Errorf("polled %d times before giving up", h.pollCount("e1"))
	}
	if got := h.emittedIDs(); len(got) != 0 {
		t.Errorf("emitted %v", got)
	}
	if s := m.Stats(); s.GaveUp != 1 || s.Active != 0 {
		t.Errorf("stats %+v", s)
	}
	if ids := st.ids(); len(ids) != 0 {
		t.Errorf("records left: %v", ids)
	}
	if got := logs.FilterMessageSnippet("gave up").All(); len(got) != 1 || got[0].ContextMap()["entry_id"] != "e1" {
		t.Errorf("warnings %v, want one naming e1", logs.All())
	}
	// Processing finishing later changes nothing.
	if n := m.Observe("k", queryBody("k", map[string]bool{"e1": true})); n != 0 {
		t.Errorf("a given-up watch resolved")
	}
}

// TestEviction: beyond MaxWatches the oldest watch gives up with a warning
// and a count; lowering the bound evicts at once.
func TestEviction(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	h := newHooks()
	st := newMemStore()
	m := newManager(t, h, st, Settings{FirstInterval: time.Hour, MaxWatches: 2}, zap.New(core))
	add(t, m, watchOf("w1", "k", "e1"))
	time.Sleep(2 * time.Millisecond) // distinct CreatedAt; the order is what is tested
	add(t, m, watchOf("w2", "k", "e2"))
	time.Sleep(2 * time.Millisecond)
	add(t, m, watchOf("w3", "k", "e3"))
	if e := h.waitEnd(t); e != (ended{"w1", Evicted}) {
		t.Fatalf("ended %+v, want the oldest (w1) evicted", e)
	}
	if ids := st.ids(); !slices.Equal(ids, []string{"w2", "w3"}) {
		t.Errorf("stored %v", ids)
	}
	m.SetSettings(Settings{FirstInterval: time.Hour, MaxWatches: 1})
	if e := h.waitEnd(t); e != (ended{"w2", Evicted}) {
		t.Fatalf("ended %+v, want w2 evicted", e)
	}
	if s := m.Stats(); s.Evicted != 2 || s.Active != 1 {
		t.Errorf("stats %+v", s)
	}
	if n := len(logs.FilterMessageSnippet("too many").All()); n != 2 {
		t.Errorf("%d eviction warnings, want 2: %v", n, logs.All())
	}
}

// TestDeletePath: a Delete ends the watch without Processed, even when the
// entry shows processed afterwards.
func TestDeletePath(t *testing.T) {
	h := newHooks()
	st := newMemStore()
	m := newManager(t, h, st, Settings{FirstInterval: 5 * time.Millisecond, MaxInterval: 5 * time.Millisecond}, nil)
	add(t, m, watchOf("w1", "k", "e1"))
	add(t, m, watchOf("w2", "k", "e2"))
	if n := m.Forget("k", []string{"e1", "unknown"}); n != 1 {
		t.Fatalf("Forget ended %d, want 1", n)
	}
	if e := h.waitEnd(t); e != (ended{"w1", Deleted}) {
		t.Fatalf("ended %+v", e)
	}
	h.set(func(h *fakeHooks) { h.processed["e1"] = true })
	if n := m.Observe("k", queryBody("k", map[string]bool{"e1": true})); n != 0 {
		t.Error("a deleted watch resolved passively")
	}
	h.waitPolls(t, "e2", 3) // the scheduler keeps running for the others
	if c := h.pollCount("e1"); c > 1 {
		t.Errorf("deleted entry polled %d times", c)
	}
	if got := h.emittedIDs(); len(got) != 0 {
		t.Errorf("emitted %v", got)
	}
	if ids := st.ids(); !slices.Equal(ids, []string{"w2"}) {
		t.Errorf("stored %v", ids)
	}
}

// TestRestorePath: after a restart the stored watches come back: the
// expired one gives up, the live one cannot poll (no credentials or route
// yet) but resolves passively or, after Resume, by poll.
func TestRestorePath(t *testing.T) {
	now := time.Now()
	st := newMemStore(
		Watch{ID: "old", APIKey: "k", EntryID: "e0", CreatedAt: now.Add(-2 * time.Hour), Deadline: now.Add(-time.Hour)},
		Watch{ID: "w1", APIKey: "k", EntryID: "e1", CreatedAt: now.Add(-time.Minute), Deadline: now.Add(time.Hour)},
		Watch{ID: "w2", APIKey: "k", EntryID: "e2", CreatedAt: now.Add(-time.Minute), Deadline: now.Add(time.Hour)},
	)
	h := newHooks()
	h.cannot = true
	m := New(Config{Hooks: h, Store: st, Settings: Settings{FirstInterval: 5 * time.Millisecond, MaxInterval: 5 * time.Millisecond}})
	t.Cleanup(m.Close)
	if err := m.Load(); err != nil {
		t.Fatal(err)
	}
	m.Start()
	if e := h.waitEnd(t); e != (ended{"old", GaveUp}) {
		t.Fatalf("ended %+v, want the expired watch given up", e)
	}
	if m.Len() != 2 {
		t.Fatalf("Len = %d, want 2", m.Len())
	}
	// Loading again adds nothing.
	if err := m.Load(); err != nil || m.Len() != 2 {
		t.Fatalf("second Load: %v, Len %d", err, m.Len())
	}

	// Polls cannot be made: they are not counted.
	select {
	case <-h.polled:
	case <-time.After(within):
		t.Fatal("restored watch never tried to poll")
	}
	if s := m.Stats(); s.Polls != 0 {
		t.Errorf("impossible polls counted: %+v", s)
	}

	// Passive detection works meanwhile.
	if n := m.Observe("k", queryBody("k", map[string]bool{"e1": true})); n != 1 {
		t.Fatalf("passive resolution after restore: %d", n)
	}
	if e := h.waitEnd(t); e != (ended{"w1", ProcessedPassive}) {
		t.Fatalf("ended %+v", e)
	}

	// Once polls can be made, Resume polls the stalled watch at once even
	// though its interval would be long.
	m.SetSettings(Settings{FirstInterval: time.Hour})
	// Wait until w2 has stalled again and is rescheduled an hour out (the
	// fake reports a poll before the Manager reschedules, so the state is
	// polled with a deadline).
	deadline := time.Now().Add(within)
	for {
		m.mu.Lock()
		it := m.byID["w2"]
		ready := it != nil && it.stalled && it.index >= 0 && time.Until(it.due) > 30*time.Minute
		m.mu.Unlock()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("w2 never stalled")
		}
		time.Sleep(time.Millisecond)
	}
	h.set(func(h *fakeHooks) { h.cannot = false; h.processed["e2"] = true })
	m.Resume()
	if e := h.waitEnd(t); e != (ended{"w2", ProcessedByPoll}) {
		t.Fatalf("ended %+v", e)
	}
	if got := h.emittedIDs(); !slices.Equal(got, []string{"e1", "e2"}) {
		t.Errorf("emitted %v", got)
	}
}

// TestEmitFailureKeepsWatch: when Processed cannot be made durable the
// watch stays and resolves on the next observation.
func TestEmitFailureKeepsWatch(t *testing.T) {
	h := newHooks()
	h.emitErr = []error{errors.New("disk full")}
	m := newManager(t, h, nil, Settings{FirstInterval: time.Hour}, nil)
	add(t, m, watchOf("w1", "k", "e1"))
	body := queryBody("k", map[string]bool{"e1": true})
	if n := m.Observe("k", body); n != 0 {
		t.Fatalf("resolved %d despite the emit error", n)
	}
	if m.Len() != 1 {
		t.Fatal("watch dropped after a failed emit")
	}
	if n := m.Observe("k", body); n != 1 {
		t.Fatalf("resolved %d on the second observation, want 1", n)
	}
	if s := m.Stats(); s.EmitErrors != 1 || s.ProcessedPassive != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestStoreFailureKeepsWatch: a failing store costs persistence, not the
// watch.
func TestStoreFailureKeepsWatch(t *testing.T) {
	h := newHooks()
	st := newMemStore()
	st.fail = errors.New("read-only file system")
	m := newManager(t, h, st, Settings{FirstInterval: time.Hour}, nil)
	if _, added, err := m.Add(watchOf("w1", "k", "e1")); !added || err == nil {
		t.Fatalf("Add = %v, %v; want added with the store error", added, err)
	}
	if n := m.Observe("k", queryBody("k", map[string]bool{"e1": true})); n != 1 {
		t.Fatalf("resolved %d", n)
	}
	if s := m.Stats(); s.StoreErrors != 2 {
		t.Errorf("store errors %d, want 2 (put and delete)", s.StoreErrors)
	}
}

// TestPollAndPassiveRace: a poll and a passive observation that both see
// the entry processed emit Processed once.
func TestPollAndPassiveRace(t *testing.T) {
	for range 20 {
		h := newHooks()
		h.processed["e1"] = true
		release := make(chan struct{})
		h.block = release
		m := newManager(t, h, nil, Settings{FirstInterval: time.Millisecond, MaxInterval: time.Millisecond}, nil)
		add(t, m, watchOf("w1", "k", "e1"))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); close(release) }()
		go func() { defer wg.Done(); m.Observe("k", queryBody("k", map[string]bool{"e1": true})) }()
		wg.Wait()
		e := h.waitEnd(t)
		h.noEnd(t, 10*time.Millisecond)
		if got := h.emittedIDs(); !slices.Equal(got, []string{"e1"}) || e.id != "w1" {
			t.Fatalf("emitted %v (ended %+v), want e1 once", got, e)
		}
		m.Close()
	}
}

// TestConcurrencyBound: no more polls in flight than Config.Concurrency.
func TestConcurrencyBound(t *testing.T) {
	h := newHooks()
	release := make(chan struct{})
	h.block = release
	m := New(Config{Hooks: h, Settings: Settings{FirstInterval: time.Millisecond, MaxInterval: time.Millisecond}, Concurrency: 2})
	t.Cleanup(m.Close)
	m.Start()
	for i := range 6 {
		add(t, m, watchOf(fmt.Sprint("w", i), "k", fmt.Sprint("e", i)))
	}
	time.Sleep(30 * time.Millisecond) // give the scheduler every chance to overrun the bound
	close(release)
	for i := range 6 {
		h.waitPolls(t, fmt.Sprint("e", i), 1)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.maxFlight != 2 {
		t.Errorf("max polls in flight %d, want 2", h.maxFlight)
	}
}

// TestCloseCancelsPolls: Close returns promptly with a poll blocked on the
// upstream, and the watch stays stored.
func TestCloseCancelsPolls(t *testing.T) {
	h := newHooks()
	h.block = make(chan struct{}) // never released
	st := newMemStore()
	m := New(Config{Hooks: h, Store: st, Settings: Settings{FirstInterval: time.Millisecond}, PollTimeout: time.Hour})
	m.Start()
	add(t, m, watchOf("w1", "k", "e1"))
	deadline := time.Now().Add(within)
	for {
		h.mu.Lock()
		n := h.inFlight
		h.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no poll started")
		}
		time.Sleep(time.Millisecond) // polling the fake's state with a deadline
	}
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatal("Close blocked on a poll")
	}
	if ids := st.ids(); !slices.Equal(ids, []string{"w1"}) {
		t.Errorf("stored %v after Close, want the watch kept for the next start", ids)
	}
	m.Close() // again: no-op
}

func TestAddDuplicate(t *testing.T) {
	h := newHooks()
	m := newManager(t, h, nil, Settings{FirstInterval: time.Hour}, nil)
	first := add(t, m, watchOf("w1", "k", "e1"))
	got, added, err := m.Add(watchOf("w2", "k", "e1"))
	if added || err != nil || got.ID != first.ID {
		t.Errorf("second Add of the entry = %+v, %v, %v; want the first watch, false", got, added, err)
	}
	if _, added, _ := m.Add(watchOf("w1", "k", "e9")); added {
		t.Error("a reused watch ID was added")
	}
	if _, added, _ := m.Add(watchOf("w3", "k2", "e1")); !added {
		t.Error("the same entry id in another collection was refused")
	}
}
