// Command bench measures what caddy-echo3d-webhooks costs next to plain
// reverse_proxy, in the same run, on this machine: throughput and added
// latency for a non-event call, an event call and a 1 MiB upload; peak
// memory during a 1 GiB upload; the delivery rate of a 100,000-event backlog
// and the event latency (upstream response → webhook arrival) at a fixed
// rate. It prints a Markdown report.
//
//	./xcaddy.sh bench            # builds ./bin/caddy, then runs this
//	go run ./bench -caddy ./bin/caddy [-duration 5s -rounds 3 -conns 32 -rate 2000]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/sink"
)

func main() {
	if slices.Contains(os.Environ(), receiverRole) {
		serveReceiver()
		return
	}
	var (
		bin          = flag.String("caddy", "./bin/caddy", "Caddy binary with the plugin")
		duration     = flag.Duration("duration", 5*time.Second, "length of one measured round")
		rounds       = flag.Int("rounds", 3, "rounds per site (alternating plugin and plain)")
		conns        = flag.Int("conns", 32, "concurrent connections at saturation")
		rate         = flag.Int("rate", 2000, "requests per second for the fixed-rate runs")
		bigSize      = flag.Int64("upload-size", 1<<30, "size of the large upload for the memory check")
		backlog      = flag.Int("backlog", 100000, "events in the delivery backlog")
		drainWorkers = flag.Int("drain-workers", 128, "workers and per_webhook of the last drain configuration")
		drainPairN   = flag.Int("drain-pairs", 3, "alternating pairs of the drain with -drain-workers and the plugin's client alone, whose median the drain target is checked against (0: the single drain)")
		ordering     = flag.String("ordering", "concurrent", "the Caddy's ordering option (strict or concurrent)")
		perWebhook   = flag.Int("per-webhook", 16, "the Caddy's per_webhook option")
		versions     = flag.String("versions", "1.1", "the Caddy's versions option, also used by the drain's dispatcher: \"1.1 2\" or \"1.1\"")
		only         = flag.String("only", "", "comma list of phases to run: saturation,fixed,memory,drain (default all)")
		cpuProf      = flag.String("cpuprofile", "", "write a CPU profile of this process (load generator, upstream and the in-process drain; not the receiver, which has its own) to this file")
		caddyPr      = flag.String("caddy-profile", "", "during the first saturation and fixed-rate round of each call and site, fetch a profile of Caddy from its admin endpoint into PREFIX.<call>.<site>.pprof and PREFIX.fixed-<call>.<site>.pprof")
		floor        = flag.Bool("floor", false, "the Caddy binary is the floor probe (./xcaddy.sh floor): say so in the report")
		caddyPrKind  = flag.String("caddy-profile-kind", "profile", "what -caddy-profile fetches from /debug/pprof/: profile (CPU), allocs (allocations during the round) or trace (an execution trace, for go tool trace)")
	)
	flag.Parse()
	switch *caddyPrKind {
	case "profile", "allocs", "trace":
	default:
		fmt.Fprintf(os.Stderr, "-caddy-profile-kind: want profile, allocs or trace, got %q\n", *caddyPrKind)
		os.Exit(2)
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		must(err, "creating CPU profile")
		must(pprof.StartCPUProfile(f), "starting CPU profile")
		defer pprof.StopCPUProfile()
	}
	phase := func(name string) bool { return *only == "" || strings.Contains(","+*only+",", ","+name+",") }

	dir, err := os.MkdirTemp("", "echo3d-bench-")
	must(err, "temp dir")
	defer os.RemoveAll(dir)
	up := newUpstream()
	defer up.srv.Close()
	rc := startReceiver(up)
	defer rc.close()
	ca, err := rc.writeCA(dir)
	must(err, "writing CA")
	if *versions != "1.1 2" && *versions != "1.1" {
		fmt.Fprintf(os.Stderr, "-versions: want \"1.1 2\" or \"1.1\", got %q\n", *versions)
		os.Exit(2)
	}
	opts := deliveryOpts{ordering: *ordering, perWebhook: *perWebhook, http1Only: *versions == "1.1"}
	cp := startCaddy(*bin, dir, up.srv.Listener.Addr().String(), ca, opts)
	cp.profileKind = *caddyPrKind
	defer cp.stop()
	cp.createWebhook(rc.url()+"/hook", "bench-key", "Upload", "Processed", "CollectionMetadataAdd")
	// The fixed-rate event calls go to another collection and webhook, so
	// a backlog left by the saturation runs does not count in their latency
	// (each webhook has its own queue).
	cp.createWebhook(rc.url()+"/latency", "bench-latency", "CollectionMetadataAdd")

	r := &report{}
	var checks targets
	r.linef("# caddy-echo3d-webhooks benchmark\n")
	r.linef("Machine: %s/%s, %d CPUs, %s. Go %s. Date %s.", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	r.linef("Load generator and fake upstream (one process) and the HTTPS receiver (another) run on the same machine as Caddy and share its CPUs.")
	r.linef("Each figure alternates the plugin site and the plain `reverse_proxy` site (%d rounds × %s each).", *rounds, *duration)
	if *floor {
		r.linef("**Floor probe** (`./xcaddy.sh floor`, bench/floor.patch): the plugin's Caddy derives, signs and sends each event as shipped, but stores nothing and runs no dispatcher. What it reaches bounds any outbox that signs and sends each event from Caddy's process to this receiver, in this run's conditions.\n")
	}
	r.linef("The plugin's Caddy delivers with `ordering %s`, `per_webhook %d` and `versions %s` (`-ordering`, `-per-webhook`, `-versions`); the receiver offers HTTP/2 and HTTP/1.1.\n", opts.ordering, opts.perWebhook, *versions)

	c := newClient(*conns)
	scenarios := []struct {
		name string
		mk   request
		file string // names its Caddy profiles
	}{
		{"`GET /query` (no event)", queryRequest, "query"},
		{"`POST /post` (event)", postRequest, "post"},
		{"`POST /upload` 1 MiB multipart (event)", uploadRequest(1 << 20), "upload"},
	}
	// Warm both sites and the connection pools.
	for _, base := range []string{cp.pluginURL, cp.plainURL} {
		closedLoop(c, base, queryRequest, *conns, time.Second)
	}

	// Memory and fixed rate first, on a fresh store: right after a
	// saturation burst, Badger compacts what the burst wrote, which costs
	// latency and moves RSS by tens of MiB whatever the requests do.
	if phase("memory") {
		r.linef("## Memory during a %d MiB upload\n", *bigSize>>20)
		r.linef("| Site | RSS before | peak RSS | added |")
		r.linef("|---|---|---|---|")
		for _, site := range []struct{ name, base string }{{"plain", cp.plainURL}, {"plugin", cp.pluginURL}} {
			before := rssKiB(cp.cmd.Process.Pid)
			stop := make(chan struct{})
			peak := sampleRSS(cp.cmd.Process.Pid, stop)
			body, ct := streamingUpload(*bigSize)
			req, _ := http.NewRequest(http.MethodPost, site.base+"/upload", body)
			req.Header.Set("Content-Type", ct)
			_, ok := do(c, req)
			close(stop)
			p := <-peak
			r.linef("| %s | %d MiB | %d MiB | %d MiB%s |", site.name, before>>10, p>>10, (p-before)>>10, map[bool]string{true: "", false: " (request failed)"}[ok])
			if site.name == "plugin" {
				added := (p - before) >> 10
				checks.add(fmt.Sprintf("%d MiB upload: Caddy's peak RSS < +50 MiB", *bigSize>>20), ok && added < 50, "+%d MiB", added)
			}
		}
		r.linef("")
	}

	if phase("fixed") {
		r.linef("## Fixed rate (%d req/s)\n", *rate)
		r.linef("| Call | plain p50 / p99 | plugin p50 / p99 | added p50 / p99 |")
		r.linef("|---|---|---|---|")
		fixed := []struct {
			name string
			mk   request
			file string
		}{scenarios[0], {"`POST /post` (event)", latencyPostRequest, "post"}}
		var conns0, count0 int64
		for _, sc := range fixed {
			if strings.Contains(sc.name, "/post") {
				rc.reset()
				s := rc.stats()
				conns0, count0 = s.Conns, s.Count
			}
			plain, plugin := profiledRounds(*rounds, cp, *caddyPr, "fixed-"+sc.file, *duration, func(base string) runResult {
				return openLoop(c, base, sc.mk, *rate, *duration)
			})
			r.linef("| %s | %s / %s | %s / %s | %s / %s |", sc.name,
				ms(percentile(plain.lat, 50)), ms(percentile(plain.lat, 99)),
				ms(percentile(plugin.lat, 50)), ms(percentile(plugin.lat, 99)),
				ms(percentile(plugin.lat, 50)-percentile(plain.lat, 50)), ms(percentile(plugin.lat, 99)-percentile(plain.lat, 99)))
			checks.addedP99(sc.name, *rate, percentile(plugin.lat, 99)-percentile(plain.lat, 99))
		}
		time.Sleep(2 * time.Second) // let the last deliveries land before reading the latencies
		lat := rc.latencies()
		s := rc.stats()
		rc.stopRecording()
		// The maximum shows a stall (a delivery left for the loop's 1 s
		// poll) that p99 can hide.
		r.linef("\nEvent latency at %d event calls/s (upstream response → webhook received, %d events): p50 %s, p99 %s, max %s. The receiver accepted %d new connections for %d deliveries (0: Caddy kept the connections it had).\n",
			*rate, len(lat), ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100)), s.Conns-conns0, s.Count-count0)
		checks.add(fmt.Sprintf("Event latency at %d event calls/s: p99 < 50 ms", *rate), len(lat) > 0 && percentile(lat, 99) < 50*time.Millisecond, "%s", ms(percentile(lat, 99)))
	}

	if phase("saturation") {
		r.linef("## Saturation (%d connections)\n", *conns)
		r.linef("| Call | plain req/s | plugin req/s | ratio | plain p50 / p99 | plugin p50 / p99 | errors |")
		r.linef("|---|---|---|---|---|---|---|")
		var keepPace string
		for _, sc := range scenarios {
			before := rc.count()
			plain, plugin := profiledRounds(*rounds, cp, *caddyPr, sc.file, *duration, func(base string) runResult {
				return closedLoop(c, base, sc.mk, *conns, *duration)
			})
			ratio := 100 * plugin.rps() / plain.rps()
			r.linef("| %s | %.0f | %.0f | **%.1f %%** | %s / %s | %s / %s | %d |", sc.name, plain.rps(), plugin.rps(),
				ratio, ms(percentile(plain.lat, 50)), ms(percentile(plain.lat, 99)),
				ms(percentile(plugin.lat, 50)), ms(percentile(plugin.lat, 99)), plain.errors+plugin.errors)
			if sc.file == "query" {
				checks.add(sc.name+" at saturation: ≥ 97 % of plain", ratio >= 97, "%.1f %%", ratio)
			}
			if !strings.Contains(sc.name, "/post") {
				continue
			}
			// Did the deliveries keep pace with the events?
			events := plugin.requests - plugin.errors
			loadEnd := time.Now()
			delivered := rc.count() - before
			for delivered < events && time.Since(loadEnd) < time.Minute {
				time.Sleep(10 * time.Millisecond)
				delivered = rc.count() - before
			}
			keepPace = fmt.Sprintf("During the `POST /post` rounds the plugin site derived %d events (%.0f/s); the last was delivered %s after the load stopped (%d of %d delivered).",
				events, float64(events)/plugin.elapsed.Seconds(), time.Since(loadEnd).Round(time.Millisecond), delivered, events)
			checks.add(sc.name+" at saturation: ≥ 75 % of plain, every event delivered", ratio >= 75 && delivered >= events, "%.1f %%, %d of %d delivered", ratio, delivered, events)
		}
		r.linef("\n%s", keepPace)
		r.linef("")
	}

	if phase("drain") {
		r.linef("## Delivery backlog\n")
		// The drains' store and dispatcher run in this process: start them
		// on a heap without what the load phases left behind.
		runtime.GC()
		if waited, idle := waitIdle(cp.cmd.Process.Pid, 2*time.Minute); !idle {
			r.linef("Caddy was still busy (Badger compacting what the earlier phases wrote) after %s: the drains share the cores with it.\n", waited.Round(time.Second))
		} else if waited > 2*time.Second {
			r.linef("The drains started once Caddy was idle, %s after the earlier phases (Badger compacting what they wrote).\n", waited.Round(time.Second))
		}
		r.linef("%d events for one webhook enqueued straight into a fresh Badger outbox, then drained by a dispatcher to the local HTTPS receiver (`versions %s`), once per configuration. CPU per delivery is the CPU time of this process (dispatcher and store) and of the receiver's over the drain (2 cores give 2 s of CPU per second), which the machine's other load disturbs less than the rate:\n", *backlog, *versions)
		r.linef("| Dispatcher | enqueue events/s | drain time | deliveries/s | CPU per delivery |")
		r.linef("|---|---|---|---|---|")
		modes := []drainMode{
			{perWebhook: sink.DefaultPerWebhook, workers: sink.DefaultWorkers},
			{ordering: sink.OrderingConcurrent, perWebhook: sink.DefaultPerWebhook, workers: sink.DefaultWorkers},
			{ordering: sink.OrderingConcurrent, perWebhook: *drainWorkers, workers: *drainWorkers},
		}
		for i := range modes {
			modes[i].http1Only = opts.http1Only
		}
		// The last one over the other versions setting too, for the
		// trade-off.
		m := modes[len(modes)-1]
		m.http1Only = !m.http1Only
		modes = append(modes, m)
		rates := map[drainMode]float64{}
		for _, m := range modes {
			res := drain(dir, rc, *backlog, rc.pool(), m)
			rates[m] = res.rate()
			r.linef("| %s | %.0f | %s | **%.0f** | %s |", m, res.enqueueRate, res.elapsed.Round(time.Millisecond), res.rate(), res.cpuPerDelivery())
		}
		// The ceiling: the same receiver and concurrency, without the
		// plugin, over each version the drains used.
		ceilings := map[bool]float64{}
		for _, m := range modes[2:] {
			cm := ceilingMode{conns: m.workers, http1Only: m.http1Only}
			res := ceiling(rc, *backlog, rc.pool(), cm)
			ceilings[m.http1Only] = res.rate()
			r.linef("| %s | — | %s | **%.0f** | %s |", cm, res.elapsed.Round(time.Millisecond), res.rate(), res.cpuPerDelivery())
		}
		// The plugin's client alone, over the first drain's version: the
		// drain's cost above it is the store's and the dispatcher's.
		cm := ceilingMode{conns: modes[2].workers, http1Only: modes[2].http1Only, sinkClient: true}
		res := ceiling(rc, *backlog, rc.pool(), cm)
		r.linef("| %s | — | %s | **%.0f** | %s |", cm, res.elapsed.Round(time.Millisecond), res.rate(), res.cpuPerDelivery())
		// The setting the target's ceiling (60,000/s) was given for: a
		// bare net/http client and server, here in one process, HTTP/1.1.
		bare := ceilingMode{conns: modes[2].workers, http1Only: true, inProcess: true}
		bareRes := ceiling(rc, *backlog, nil, bare)
		r.linef("| %s | — | %s | **%.0f** | %s |", bare, bareRes.elapsed.Round(time.Millisecond), bareRes.rate(), bareRes.cpuPerDelivery())
		r.linef("")
		r.linef("- The targets took a bare Go HTTPS client and server on this machine to make about 60,000 small POSTs/s; in one process, as above, they made %.0f/s in this run.", bareRes.rate())
		for _, m := range modes[2:] {
			if c := ceilings[m.http1Only]; c > 0 {
				r.linef("- %s: %.0f %% of the bare client's rate over the same version.", m, 100*rates[m]/c)
			}
		}
		best := modes[2]
		own := res.rate()
		if own > 0 {
			r.linef("- %s: %.0f %% of the plugin's client alone; the rest is the store's and the dispatcher's.", best, 100*rates[best]/own)
		}
		r.linef("")
		target := fmt.Sprintf("%d-event backlog: ≥ 20,000 deliveries/s", *backlog)
		if *drainPairN <= 0 {
			checks.add(target, rates[best] >= 20000, "%.0f/s (%s; %.0f %% of the bare client's %.0f/s, %.0f %% of the plugin's client alone at %.0f/s)",
				rates[best], best, 100*rates[best]/ceilings[best.http1Only], ceilings[best.http1Only], 100*rates[best]/own, own)
		} else {
			pairs := drainPairs(dir, rc, *backlog, rc.pool(), best, *drainPairN)
			writeDrainPairs(r, best, *backlog, pairs)
			d := summarize(pairs, func(p drainPair) float64 { return p.drain.rate() })
			q := summarize(pairs, drainPair.ratio)
			checks.add(target, d.median >= 20000, "median %.0f/s over %d pairs (%.0f–%.0f; %s), %.0f %% of the plugin's client alone",
				d.median, len(pairs), d.low, d.high, best, q.median)
		}
	}
	checks.write(r)
	fmt.Print(r.String())
}

// profiledRounds is alternate that, when prefix is set, also fetches a
// profile of Caddy covering the first round of each site into
// PREFIX.<name>.<site>.pprof.
func profiledRounds(rounds int, cp *caddyProc, prefix, name string, d time.Duration, fn func(base string) runResult) (plain, plugin runResult) {
	profiled := map[string]bool{}
	return alternate(rounds, func(base string) runResult {
		if prefix != "" && !profiled[base] {
			profiled[base] = true
			done := cp.profile(fmt.Sprintf("%s.%s.%s.pprof", prefix, name, cp.site(base)), d)
			defer func() { <-done }()
		}
		return fn(base)
	}, cp)
}

// alternate runs fn rounds times per site, alternating which site goes
// first, and merges the results per site.
func alternate(rounds int, fn func(base string) runResult, cp *caddyProc) (plain, plugin runResult) {
	merge := func(into *runResult, r runResult) {
		into.requests += r.requests
		into.errors += r.errors
		into.elapsed += r.elapsed
		into.lat = append(into.lat, r.lat...)
	}
	for i := range rounds {
		if i%2 == 0 {
			merge(&plain, fn(cp.plainURL))
			merge(&plugin, fn(cp.pluginURL))
		} else {
			merge(&plugin, fn(cp.pluginURL))
			merge(&plain, fn(cp.plainURL))
		}
	}
	return plain, plugin
}

func queryRequest(base string, i int64) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, base+"/query?key=bench-key&entry=e"+itoa(int(i%1000)), nil)
	return req
}

// latencyPostRequest is postRequest for the collection whose webhook
// measures event latency.
func latencyPostRequest(base string, i int64) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, base+"/post?key=bench-latency&data=n&value=l"+itoa(int(i)), nil)
	return req
}

func postRequest(base string, i int64) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, base+"/post?key=bench-key&data=n&value=v"+itoa(int(i)), nil)
	return req
}

// uploadRequest returns a request builder for a multipart upload with a
// file part of size bytes (built once, sent from memory each time).
func uploadRequest(size int) request {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("key", "bench-key")
	_ = mw.WriteField("email", "bench@example.com")
	fw, _ := mw.CreateFormFile("file", "model.glb")
	_, _ = fw.Write(bytes.Repeat([]byte("glTF"), size/4))
	_ = mw.Close()
	body, ct := buf.Bytes(), mw.FormDataContentType()
	return func(base string, _ int64) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, base+"/upload", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		return req
	}
}

// streamingUpload generates a multipart upload of size bytes on the fly.
func streamingUpload(size int64) (io.Reader, string) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		_ = mw.WriteField("key", "bench-key")
		fw, _ := mw.CreateFormFile("file", "huge.glb")
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 16384)
		for sent := int64(0); sent < size; {
			n := min(int64(len(chunk)), size-sent)
			if _, err := fw.Write(chunk[:n]); err != nil {
				pw.CloseWithError(err)
				return
			}
			sent += n
		}
		pw.CloseWithError(mw.Close())
	}()
	return pr, mw.FormDataContentType()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return "unknown CPU"
}

// report collects Markdown lines.
type report struct{ b strings.Builder }

func (r *report) linef(format string, args ...any) { fmt.Fprintf(&r.b, format+"\n", args...) }
func (r *report) String() string                   { return r.b.String() }
