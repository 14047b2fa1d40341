package main

import (
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// request builds the i-th request of a run against base.
type request func(base string, i int64) *http.Request

// runResult is what one load run measured.
type runResult struct {
	requests int64
	errors   int64
	elapsed  time.Duration
	lat      []time.Duration
}

func (r runResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		DisableCompression:  true,
	}}
}

var seq atomic.Int64

// do sends one request and reports its latency; any non-2xx is an error.
func do(c *http.Client, req *http.Request) (time.Duration, bool) {
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return time.Since(start), false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(start), resp.StatusCode < 300
}

// closedLoop keeps conns requests in flight for d and measures throughput.
func closedLoop(c *http.Client, base string, mk request, conns int, d time.Duration) runResult {
	var res runResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var n, errs int64
			for time.Now().Before(deadline) {
				l, ok := do(c, mk(base, seq.Add(1)))
				n++
				if !ok {
					errs++
				}
				lat = append(lat, l)
			}
			mu.Lock()
			res.requests += n
			res.errors += errs
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// openLoop sends rate requests per second for d on a fixed schedule; each
// latency counts from the request's scheduled time, so a stall is not
// hidden by requests that were never sent (coordinated omission).
func openLoop(c *http.Client, base string, mk request, rate int, d time.Duration) runResult {
	var res runResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	total := int(d / interval)
	start := time.Now()
	sem := make(chan struct{}, 512)
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, ok := do(c, mk(base, seq.Add(1)))
			l := time.Since(due)
			mu.Lock()
			res.requests++
			if !ok {
				res.errors++
			}
			res.lat = append(res.lat, l)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}
