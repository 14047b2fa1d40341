package caddymodule_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/caddymodule"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// holdLockEnv names the directory TestHelperHoldStoreLock keeps open.
const holdLockEnv = "ECHO3D_TEST_HOLD_STORE"

// TestHelperHoldStoreLock is not a test: run by TestStoreLockedByAnotherProcess
// in a child process, it opens the store in $ECHO3D_TEST_HOLD_STORE, says
// "locked" and holds it until its stdin closes.
func TestHelperHoldStoreLock(t *testing.T) {
	dir := os.Getenv(holdLockEnv)
	if dir == "" {
		t.Skip("helper process only")
	}
	st, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = st.Close()
	os.Exit(0)
}

// loadCaddyfile posts a Caddyfile to the admin /load endpoint of the
// running in-process Caddy (started with the base config if need be) and
// returns the status and body, without failing on an error as InitServer
// would.
func loadCaddyfile(t *testing.T, cfg string) (int, string) {
	t.Helper()
	load(t, newTester(t), baseConfig())
	req, err := http.NewRequest(http.MethodPost, adminURL+"/load", strings.NewReader(cfg))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// TestStoreLockedByAnotherProcess: a config whose storage directory is held
// by another process does not load, and the error names the directory and
// the fix; the running config keeps serving.
func TestStoreLockedByAnotherProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "held-store")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestHelperHoldStoreLock$")
	cmd.Env = append(os.Environ(), holdLockEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("helper said %q (%v)", line, err)
	}

	upstream := okUpstream()
	defer upstream.Close()
	status, body := loadCaddyfile(t, siteConfig("\t\tstorage "+dir, upstream.Listener.Addr().String()))
	if status == http.StatusOK {
		t.Fatal("a config on a locked store directory loaded")
	}
	for _, want := range []string{dir, "another Caddy process or config is using", "stop it or set a different 'storage' directory"} {
		if !strings.Contains(body, want) {
			t.Errorf("load error %s does not say %q", body, want)
		}
	}
}

// TestStoreCorruptAtStartup: a damaged store directory stops the config
// from loading with an error that names the directory and the way out.
func TestStoreCorruptAtStartup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "corrupt-store")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("this is not a badger manifest"), 0o600); err != nil {
		t.Fatal(err)
	}
	upstream := okUpstream()
	defer upstream.Close()
	status, body := loadCaddyfile(t, siteConfig("\t\tstorage "+dir, upstream.Listener.Addr().String()))
	if status == http.StatusOK {
		t.Fatal("a config on a corrupt store loaded")
	}
	for _, want := range []string{"opening store at " + dir, "move it aside", "restore it from a backup"} {
		if !strings.Contains(body, want) {
			t.Errorf("load error %s does not say %q", body, want)
		}
	}
}

// troubleConfig is siteConfig plus an error-level log written to logFile.
func troubleConfig(appOpts, upstream, logFile string) string {
	return fmt.Sprintf(`{
	%s
	log {
		output file %s
		format json
		level ERROR
	}
	echo3d_webhooks {
%s
	}
}
%s {
	echo3d_webhooks
	reverse_proxy %s
}
`, globalHead(), logFile, appOpts, proxyURL, upstream)
}

// logLine is one JSON log entry.
type logLine map[string]any

// waitLogLine polls a JSON log file until a line with msg appears.
func waitLogLine(t *testing.T, path, msg string) logLine {
	t.Helper()
	deadline := time.Now().Add(waitWithin)
	for {
		data, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(data), "\n") {
			var e logLine
			if json.Unmarshal([]byte(l), &e) == nil && e["msg"] == msg {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q in %s:\n%s", msg, path, data)
		}
		time.Sleep(10 * time.Millisecond) // polling a log file with a deadline
	}
}

// proxyCall sends one derivable call through Caddy and checks that the
// client gets the upstream's answer.
func proxyCall(t *testing.T, key string) {
	t.Helper()
	resp, err := http.Post(proxyURL+"/post?key="+key+"&data=d&value=v", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("proxied call: %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
}

// expectStore503 checks that the admin API answers 503 with a reason
// containing want.
func expectStore503(t *testing.T, want string) {
	t.Helper()
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, "/echo3d/webhooks", nil},
		{http.MethodPost, "/echo3d/webhooks", map[string]any{"name": "n", "url": "https://hooks.example.com/h", "apiKey": "k", "triggers": []string{"Upload"}}},
	} {
		status, body := adminCall(t, c.method, c.path, c.body)
		if msg := apiErrorOf(t, body); status != http.StatusServiceUnavailable || !strings.Contains(msg, want) {
			t.Errorf("%s %s: %d %q, want 503 saying %q", c.method, c.path, status, msg, want)
		}
	}
}

// TestStoreClosedUnderneath closes the Badger database behind the running
// config's back: clients are still proxied, the lost events are logged at
// error level with their count and counted, and the admin API answers 503
// with the reason.
func TestStoreClosedUnderneath(t *testing.T) {
	upstream := okUpstream()
	defer upstream.Close()
	rc := newReceiver(t)
	dir := filepath.Join(t.TempDir(), "store")
	logFile := filepath.Join(t.TempDir(), "errors.log")
	tester := newTester(t)
	load(t, tester, troubleConfig(fmt.Sprintf("\t\tstorage %s\n\t\tallow_private_targets\n\t\ttrusted_ca_file %s", dir, writeCA(t, rc)),
		upstream.Listener.Addr().String(), logFile))
	createWebhook(t, "closed", rc.url("/closed"), "closed-key", "CollectionMetadataAdd")
	proxyCall(t, "closed-key")
	rc.waitFor(t, 1, waitWithin)

	if err := caddymodule.CloseStoreUnderneath(dir); err != nil {
		t.Fatal(err)
	}
	before := caddymodule.Skipped("store_error")
	proxyCall(t, "closed-key")
	e := waitLogLine(t, logFile, "events lost: could not write them to the outbox")
	if e["level"] != "error" || e["events"] != float64(1) || e["calls_lost_since_start"] == nil || !strings.Contains(fmt.Sprint(e["error"]), "closed") {
		t.Errorf("loss log line %v: want level error, events 1, the running count and the reason", e)
	}
	if got := caddymodule.Skipped("store_error"); got != before+1 {
		t.Errorf("store_error counter %d, want %d", got, before+1)
	}
	expectStore503(t, "closed")
}

// TestStoreDiskFull puts the store on a 64 MiB tmpfs and fills it past
// min_free_space: Badger is no longer written (on a really full disk it
// would crash the process with SIGBUS), clients are still proxied, the
// lost events are logged and counted, the admin API answers 503 saying
// the disk is nearly full; freeing space brings everything back. It needs
// root (to mount the tmpfs) and is skipped otherwise.
func TestStoreDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	// Registered first, so it runs after load's cleanup released the store.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})

	upstream := okUpstream()
	defer upstream.Close()
	rc := newReceiver(t)
	logFile := filepath.Join(t.TempDir(), "errors.log")
	tester := newTester(t)
	load(t, tester, troubleConfig(fmt.Sprintf("\t\tstorage %s\n\t\tmin_free_space 32MiB\n\t\tretry 50ms\n\t\tallow_private_targets\n\t\ttrusted_ca_file %s",
		filepath.Join(mnt, "store"), writeCA(t, rc)), upstream.Listener.Addr().String(), logFile))
	hook := createWebhook(t, "full", rc.url("/full"), "full-key", "CollectionMetadataAdd")

	free, ok := caddymodule.DiskFree(mnt)
	if !ok {
		t.Fatal("cannot read the free space of the tmpfs")
	}
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, int64(free)-16<<20), 0o600); err != nil {
		t.Fatalf("filling the tmpfs: %v", err)
	}

	before := caddymodule.Skipped("store_error")
	proxyCall(t, "full-key")
	e := waitLogLine(t, logFile, "events lost: could not write them to the outbox")
	if e["level"] != "error" || !strings.Contains(fmt.Sprint(e["error"]), "disk nearly full") || !strings.Contains(fmt.Sprint(e["error"]), "min_free_space") {
		t.Errorf("loss log line %v: want level error and the disk reason", e)
	}
	if got := caddymodule.Skipped("store_error"); got != before+1 {
		t.Errorf("store_error counter %d, want %d", got, before+1)
	}
	expectStore503(t, "disk nearly full")

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if status, body := adminCall(t, http.MethodGet, "/echo3d/webhooks/"+hook.ID, nil); status != http.StatusOK {
		t.Fatalf("admin after freeing space: %d %s", status, body)
	}
	proxyCall(t, "full-key")
	got := rc.waitFor(t, 1, waitWithin)
	if !strings.Contains(string(got[0].Body), `"metadataKeys":["d"]`) {
		t.Errorf("delivery after freeing space: %s", got[0].Body)
	}
}
