package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// caddyfileTemplate is the demo's Caddy config: the plugin in front of the
// fake echo3D API, everything on loopback, a store in the demo's temporary
// directory, private targets and the receiver's certificate allowed, and
// short retries. Arguments: admin port, store dir, receiver CA file, proxy
// port, fake echo3D address.
const caddyfileTemplate = `{
	admin localhost:%d
	persist_config off
	echo3d_webhooks {
		storage "%s"
		retry 1s 2s 5s 10s 30s
		timeout 5s
		allow_private_targets
		trusted_ca_file "%s"
	}
}

http://:%d {
	bind 127.0.0.1
	echo3d_webhooks
	reverse_proxy %s
}
`

// caddyProcess is the Caddy child process.
type caddyProcess struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // its exit error, valid after done
}

// startCaddy runs `caddy run` on the config in dir, its log going to
// dir/caddy.log (and to stderr too when verbose).
func startCaddy(bin, dir, config string, verbose bool) (*caddyProcess, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("no Caddy binary at %s: build it with ./xcaddy.sh build (./xcaddy.sh demo does), or pass -caddy: %w", bin, err)
	}
	logPath := filepath.Join(dir, "caddy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating Caddy's log file: %w", err)
	}
	cmd := exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile")
	// Caddy's data and config directories stay inside the demo's directory.
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	var logs io.Writer = logFile
	if verbose {
		logs = io.MultiWriter(logFile, os.Stderr)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	ownProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &caddyProcess{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// stop asks Caddy to shut down gracefully and kills it if it has not
// exited within grace.
func (p *caddyProcess) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		grace = 0 // no interrupt on this platform
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// exitedError describes an unexpected exit, with the end of Caddy's log.
func (p *caddyProcess) exitedError() error {
	return fmt.Errorf("caddy exited (%v); the end of its log (%s):\n%s", p.err, p.logPath, tail(p.logPath, 15))
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// adminClient calls Caddy's admin API.
type adminClient struct {
	base   string // http://localhost:<port>
	client *http.Client
}

// apiError is an error answer of the admin API.
type apiError struct {
	Status  int
	Message string `json:"error"`
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message) }

// call sends a JSON request and decodes a 2xx JSON answer into out.
func (a adminClient) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(raw, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(raw))
		}
		return e
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// waitReady waits until the echo3d_webhooks admin routes answer and the
// proxy accepts connections (the admin API answers while Caddy is still
// starting its servers), Caddy exits, or ctx ends.
func (a adminClient) waitReady(ctx context.Context, p *caddyProcess, proxyAddr string) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := a.call(ctx, http.MethodGet, "/echo3d/webhooks", nil, nil)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return fmt.Errorf("%s answers 404 on /echo3d/webhooks: it was built without caddy-echo3d-webhooks", p.cmd.Path)
		}
		if err == nil {
			var conn net.Conn
			if conn, err = new(net.Dialer).DialContext(ctx, "tcp", proxyAddr); err == nil {
				conn.Close()
				return nil
			}
		}
		select {
		case <-p.done:
			return p.exitedError()
		case <-ctx.Done():
			return fmt.Errorf("waiting for Caddy's admin API at %s: %w (last error: %v)", a.base, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// webhook is the part of the admin API's webhook the demo uses.
type webhook struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// secrets returns the signing secret of every registered webhook.
func (a adminClient) secrets(ctx context.Context) ([]string, error) {
	var hooks []webhook
	if err := a.call(ctx, http.MethodGet, "/echo3d/webhooks", nil, &hooks); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(hooks))
	for _, h := range hooks {
		var full webhook
		if err := a.call(ctx, http.MethodGet, "/echo3d/webhooks/"+h.ID, nil, &full); err != nil {
			return nil, err
		}
		out = append(out, full.Secret)
	}
	return out, nil
}

// freePort returns a loopback port that was free a moment ago, for the
// ports Caddy must bind itself.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
