package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// caddyProc is the Caddy under test, with one site that has the plugin and
// one with plain reverse_proxy, both in front of the same upstream.
type caddyProc struct {
	cmd       *exec.Cmd
	adminURL  string
	pluginURL string
	plainURL  string
	logs      *bytes.Buffer
	// profileKind is what profile fetches: profile (CPU), allocs or
	// trace.
	profileKind string
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err, "picking a port")
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// deliveryOpts are the delivery options of the Caddy under test.
type deliveryOpts struct {
	ordering   string // strict or concurrent
	perWebhook int
	http1Only  bool // versions 1.1
}

// versionsLine is the versions line of the Caddyfile: none for the
// default (HTTP/1.1 through the plugin's transport).
func (o deliveryOpts) versionsLine() string {
	if o.http1Only {
		return ""
	}
	return "versions 1.1 2"
}

func startCaddy(bin, dir, upstreamAddr, caFile string, o deliveryOpts) *caddyProc {
	admin, plugin, plain := freePort(), freePort(), freePort()
	cfg := fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	log default {
		level ERROR
	}
	echo3d_webhooks {
		storage %s
		retry 1s 5s 30s
		timeout 10s
		allow_private_targets
		trusted_ca_file %s
		ordering %s
		per_webhook %d
		%s
	}
}
http://:%d {
	echo3d_webhooks
	reverse_proxy %s
}
http://:%d {
	reverse_proxy %s
}
`, admin, filepath.Join(dir, "store"), caFile, o.ordering, o.perWebhook, o.versionsLine(), plugin, upstreamAddr, plain, upstreamAddr)
	path := filepath.Join(dir, "Caddyfile")
	must(os.WriteFile(path, []byte(cfg), 0o600), "writing Caddyfile")
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	logs := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = logs, logs
	must(cmd.Start(), "starting caddy")
	p := &caddyProc{
		cmd:       cmd,
		adminURL:  fmt.Sprintf("http://localhost:%d", admin),
		pluginURL: fmt.Sprintf("http://127.0.0.1:%d", plugin),
		plainURL:  fmt.Sprintf("http://127.0.0.1:%d", plain),
		logs:      logs,
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.adminURL + "/config/")
		if err == nil {
			resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			p.stop()
			panic("caddy did not start:\n" + logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *caddyProc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// site names the site at base: "plugin" or "plain".
func (p *caddyProc) site(base string) string {
	if base == p.pluginURL {
		return "plugin"
	}
	return "plain"
}

// profile fetches a profile of Caddy (p.profileKind) covering the next d
// (whole seconds, at least one) from the admin endpoint into file; the channel is closed
// once the profile is written or failed (reported on stderr).
func (p *caddyProc) profile(file string, d time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		secs := max(int(d/time.Second), 1)
		resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", p.adminURL, p.profileKind, secs))
		if err != nil {
			fmt.Fprintln(os.Stderr, "caddy profile:", err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		if err == nil {
			err = os.WriteFile(file, b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "caddy profile:", err)
		}
	}()
	return done
}

// createWebhook registers a webhook through the admin API.
func (p *caddyProc) createWebhook(url, apiKey string, triggers ...string) string {
	body, _ := json.Marshal(map[string]any{"name": "bench", "url": url, "apiKey": apiKey, "triggers": triggers})
	resp, err := http.Post(p.adminURL+"/echo3d/webhooks", "application/json", bytes.NewReader(body))
	must(err, "creating webhook")
	defer resp.Body.Close()
	var w struct{ ID string }
	must(json.NewDecoder(resp.Body).Decode(&w), "reading webhook")
	if resp.StatusCode != http.StatusCreated {
		panic(fmt.Sprintf("creating webhook: status %d", resp.StatusCode))
	}
	return w.ID
}

// rssKiB reads the resident set size of the process from /proc.
func rssKiB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// sampleRSS samples the process's RSS until stop is closed and returns the
// peak seen.
func sampleRSS(pid int, stop <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		peak := rssKiB(pid)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
				peak = max(peak, rssKiB(pid))
			}
		}
	}()
	return out
}

// procCPU returns the CPU time (user and system) process pid has used, from
// /proc; ok is false where that cannot be read.
func procCPU(pid int) (cpu time.Duration, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after it. utime and stime are fields 14 and 15, in clock ticks
	// (USER_HZ, 100 per second on Linux).
	_, rest, found := strings.Cut(string(b), ") ")
	if !found {
		return 0, false
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}

// waitIdle waits, at most limit, until process pid uses under 5 % of a core
// over a second, and returns how long it waited; idle is false if it
// never was, or its CPU time cannot be read. The drains use it so that
// Caddy's Badger, still compacting what the earlier phases wrote, does not
// share the cores with them.
func waitIdle(pid int, limit time.Duration) (waited time.Duration, idle bool) {
	start := time.Now()
	prev, ok := procCPU(pid)
	if !ok {
		return 0, false
	}
	for time.Since(start) < limit {
		time.Sleep(time.Second)
		cur, ok := procCPU(pid)
		if !ok {
			return time.Since(start), false
		}
		if cur-prev < 50*time.Millisecond {
			return time.Since(start), true
		}
		prev = cur
	}
	return time.Since(start), false
}
