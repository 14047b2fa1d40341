package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/internal/echo3dtest"
)

// Time limits of the demo's phases.
const (
	startTimeout = 30 * time.Second // Caddy's admin API up
	stepTimeout  = 20 * time.Second // deliveries of one scripted step
	stopGrace    = 10 * time.Second // Caddy's graceful shutdown
)

// demoUserKey stands for the user's echo3D credential in the scripted
// requests; it never appears in a delivery.
const demoUserKey = "demo-user-key"

// report says which scripted triggers were not delivered with a valid
// signature.
type report struct {
	want    []events.Trigger
	missing []events.Trigger
}

// complete reports whether every scripted trigger was delivered and
// verified.
func (r report) complete() bool { return len(r.want) > 0 && len(r.missing) == 0 }

// run starts the fake echo3D API, the receiver and Caddy, registers the
// demo webhook, runs the scripted session and, unless o.once, waits for ctx
// to end. It stops everything it started before returning.
func run(ctx context.Context, o options, w io.Writer) (report, error) {
	out := &console{w: w}
	dir, err := os.MkdirTemp("", "echo3d-demo-")
	if err != nil {
		return report{}, fmt.Errorf("creating the demo's directory: %w", err)
	}
	defer os.RemoveAll(dir)

	fakeLn, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(o.echo3dPort)))
	if err != nil {
		return report{}, fmt.Errorf("fake echo3D API: %w (choose another -echo3d-port)", err)
	}
	fake := &http.Server{Handler: echo3dtest.NewServer(echo3dtest.Options{}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = fake.Serve(fakeLn) }()
	defer fake.Close()

	cert, certPEM, err := selfSigned()
	if err != nil {
		return report{}, fmt.Errorf("receiver certificate: %w", err)
	}
	caFile := filepath.Join(dir, "receiver-ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		return report{}, fmt.Errorf("writing the receiver's certificate: %w", err)
	}
	rcvLn, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(o.receiverPort)))
	if err != nil {
		return report{}, fmt.Errorf("webhook receiver: %w (choose another -receiver-port)", err)
	}
	receiverURL := "https://" + rcvLn.Addr().String()

	proxyPort, adminPort := o.proxyPort, o.adminPort
	for _, p := range []*int{&proxyPort, &adminPort} {
		if *p == 0 {
			if *p, err = freePort(); err != nil {
				return report{}, fmt.Errorf("picking a free port: %w", err)
			}
		}
	}
	admin := adminClient{base: fmt.Sprintf("http://localhost:%d", adminPort), client: &http.Client{Timeout: 15 * time.Second}}
	rc := newReceiver(out, admin.secrets)
	rcv := &http.Server{
		Handler:           rc,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = rcv.ServeTLS(rcvLn, "", "") }()
	defer rcv.Close()

	config := filepath.Join(dir, "Caddyfile")
	cfg := fmt.Sprintf(caddyfileTemplate, adminPort, filepath.Join(dir, "store"), caFile, proxyPort, fakeLn.Addr())
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		return report{}, fmt.Errorf("writing the Caddyfile: %w", err)
	}
	proc, err := startCaddy(o.caddy, dir, config, o.verbose)
	if err != nil {
		return report{}, err
	}
	defer proc.stop(stopGrace)
	readyCtx, cancel := context.WithTimeout(ctx, startTimeout)
	err = admin.waitReady(readyCtx, proc, net.JoinHostPort("127.0.0.1", strconv.Itoa(proxyPort)))
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return report{}, nil
		}
		return report{}, fmt.Errorf("%w\n(the ports may be taken: choose others with -proxy-port and -admin-port)", err)
	}

	triggers := make([]string, len(events.AllTriggers))
	for i, t := range events.AllTriggers {
		triggers[i] = string(t)
	}
	var hook webhook
	err = admin.call(ctx, http.MethodPost, "/echo3d/webhooks", map[string]any{
		"name":        "echo3d-demo receiver",
		"url":         receiverURL + "/webhook",
		"description": "registered by echo3d-demo",
		"apiKey":      o.apiKey,
		"triggers":    triggers,
	}, &hook)
	if err != nil {
		return report{}, fmt.Errorf("registering the demo webhook: %w", err)
	}

	proxy := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	adminAddr := fmt.Sprintf("localhost:%d", adminPort)
	out.printf(`caddy-echo3d-webhooks demo, everything on loopback:

  proxy (point echo3D clients here)  %s  ->  fake echo3D API http://%s
  Caddy admin API                    %s
  webhook receiver                   %s  (self-signed, trusted by Caddy)
  Caddy's log                        %s

Registered webhook %s through the admin API:
  collection (apiKey) %q, every trigger, url %s/webhook

Scripted session: the client's requests go through the proxy to the fake
echo3D API; the receiver prints each delivery as it arrives (sometimes before
the client has read echo3D's answer).
`, proxy, fakeLn.Addr(), adminAddr, receiverURL, proc.logPath, hook.ID, o.apiKey, receiverURL)

	scriptCtx := ctx
	if o.once {
		var cancel context.CancelFunc
		scriptCtx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	cl := echo3dClient{base: proxy, key: o.apiKey, client: &http.Client{Timeout: 5 * time.Minute}, out: out}
	rep := runScript(scriptCtx, out, cl, rc, o.apiKey)

	select {
	case <-proc.done:
		return rep, proc.exitedError()
	default:
	}
	if rep.complete() {
		out.printf("\nAll %d scripted triggers were delivered and their signatures verified.\n"+
			"(AssetStatusUpdate is reserved: nothing derives it yet.)\n", len(rep.want))
	} else {
		out.printf("\nNot delivered with a valid signature: %s. Caddy's log: %s\n", joinTriggers(rep.missing), proc.logPath)
	}
	if o.once || ctx.Err() != nil {
		return rep, nil
	}

	bin := o.caddy
	out.printf(`
The demo keeps running; Ctrl-C stops everything. Send your own requests:

  curl -s %[1]s/upload -d key=%[2]s -d url=https://example.com/lamp.glb
  curl -s %[1]s/post -d key=%[2]s -d data=color -d value=blue
  curl -s %[1]s/remove -d key=%[2]s -d data=color
  curl -s '%[1]s/delete?key=%[2]s&entry=<id printed by the upload>'

and manage webhooks with the CLI or the admin API:

  %[3]s echo3d-webhooks list --address %[4]s
  %[3]s echo3d-webhooks deliveries %[5]s --address %[4]s
  %[3]s echo3d-webhooks test %[5]s --event Upload --address %[4]s
  curl -s %[4]s/echo3d/webhooks/%[5]s

The receiver answers %[6]s/status/<code> with that status: add a webhook there
to watch retries (503) or a webhook being disabled (410), for example
  %[3]s echo3d-webhooks add --name flaky --url %[6]s/status/503 --api-key %[2]s --trigger CollectionMetadataAdd --address %[4]s
`, proxy, o.apiKey, bin, adminAddr, hook.ID, receiverURL)

	select {
	case <-ctx.Done():
		out.printf("\nStopping Caddy, the receiver and the fake echo3D API.\n")
		return rep, nil
	case <-proc.done:
		return rep, proc.exitedError()
	}
}

// step is one request of the scripted session and the triggers it must
// produce.
type step struct {
	title string
	// onEntry marks the steps that act on the uploaded entry.
	onEntry bool
	want    []events.Trigger
	// do sends the request (printing it first) and returns echo3D's answer.
	do func(ctx context.Context) (answer string, err error)
}

// runScript sends the scripted session through the proxy, waiting after
// each step for its deliveries, and reports the triggers that did not
// arrive verified.
func runScript(ctx context.Context, out *console, cl echo3dClient, rc *receiver, apiKey string) report {
	var entry string
	steps := []step{
		{"Upload a model; echo3D answers after processing it", false, []events.Trigger{events.Upload, events.Processed}, func(ctx context.Context) (string, error) {
			id, answer, err := cl.upload(ctx, "chair.glb")
			entry = id
			return answer, err
		}},
		{"Upload a new version of that entry", true, []events.Trigger{events.Edit}, func(ctx context.Context) (string, error) {
			_, answer, err := cl.upload(ctx, "chair-v2.glb", "entryId", entry)
			return answer, err
		}},
		{"Add metadata to the entry", true, []events.Trigger{events.AssetMetadataAdd}, func(ctx context.Context) (string, error) {
			return cl.form(ctx, "/post", "entry", entry, "data", "color", "value", "red")
		}},
		{"Add metadata to the collection", false, []events.Trigger{events.CollectionMetadataAdd}, func(ctx context.Context) (string, error) {
			return cl.form(ctx, "/post", "data", "theme", "value", "night")
		}},
		{"Remove the entry's metadata (the plugin looks up the removed value first)", true, []events.Trigger{events.AssetMetadataRemove}, func(ctx context.Context) (string, error) {
			return cl.form(ctx, "/remove", "entry", entry, "data", "color")
		}},
		{"Remove the collection's metadata", false, []events.Trigger{events.CollectionMetadataRemove}, func(ctx context.Context) (string, error) {
			return cl.form(ctx, "/remove", "data", "theme")
		}},
		{"Delete the entry", true, []events.Trigger{events.Delete}, func(ctx context.Context) (string, error) {
			return cl.form(ctx, "/delete", "entry", entry)
		}},
	}

	var rep report
	for i, s := range steps {
		rep.want = append(rep.want, s.want...)
		if ctx.Err() != nil {
			continue
		}
		out.printf("\n[%d/%d] %s\n", i+1, len(steps), s.title)
		if s.onEntry && entry == "" {
			out.printf("      (skipped: the upload failed)\n")
			continue
		}
		answer, err := s.do(ctx)
		if err != nil {
			out.printf("      client   request failed: %v\n", err)
			continue
		}
		out.printf("      client   <- echo3D %s\n", answer)
		stepCtx, cancel := context.WithTimeout(ctx, stepTimeout)
		if !rc.waitFor(stepCtx, apiKey, s.want...) && ctx.Err() == nil {
			out.printf("      (no verified delivery of %s within %s)\n", joinTriggers(s.want), stepTimeout)
		}
		cancel()
	}
	rc.mu.Lock()
	rep.missing = rc.missing(apiKey, rep.want)
	rc.mu.Unlock()
	return rep
}

// echo3dClient sends echo3D API calls through the proxy, as a client of
// the real API would, printing each before sending it.
type echo3dClient struct {
	base, key string
	client    *http.Client
	out       *console
}

// params returns the collection key, the user's credential and kv (name,
// value, ...) as ordered pairs, and how the demo shows them.
func (c echo3dClient) params(kv []string) ([][2]string, string) {
	kv = append([]string{"key", c.key, "userKey", demoUserKey}, kv...)
	var pairs [][2]string
	shown := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		pairs = append(pairs, [2]string{kv[i], kv[i+1]})
		shown = append(shown, kv[i]+"="+kv[i+1])
	}
	return pairs, strings.Join(shown, " ")
}

// form POSTs an urlencoded call with parameters kv (name, value, ...).
func (c echo3dClient) form(ctx context.Context, path string, kv ...string) (answer string, err error) {
	pairs, shown := c.params(kv)
	form := url.Values{}
	for _, p := range pairs {
		form.Add(p[0], p[1])
	}
	c.out.printf("      client   -> POST %s  %s\n", path, shown)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, body, err := c.do(req)
	return answerText(status, body), err
}

// upload POSTs a multipart /upload with text fields kv (name, value, ...)
// and a small generated file, and returns the entry id of the answer.
func (c echo3dClient) upload(ctx context.Context, filename string, kv ...string) (entry, answer string, err error) {
	pairs, shown := c.params(kv)
	content := bytes.Repeat([]byte("glTF demo bytes "), 256)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range pairs {
		if err := mw.WriteField(p[0], p[1]); err != nil {
			return "", "", err
		}
	}
	fw, err := mw.CreateFormFile("file", filename)
	if err != nil {
		return "", "", err
	}
	if _, err := fw.Write(content); err != nil {
		return "", "", err
	}
	if err := mw.Close(); err != nil {
		return "", "", err
	}
	c.out.printf("      client   -> POST /upload  multipart: %s file=%s (%d bytes)\n", shown, filename, len(content))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/upload", &buf)
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	status, body, err := c.do(req)
	if err != nil {
		return "", answerText(status, body), err
	}
	var e struct{ ID string }
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.ID == "" {
		return "", answerText(status, body), fmt.Errorf("no entry id in echo3D's answer")
	}
	return e.ID, fmt.Sprintf("%d, entry %s", status, e.ID), nil
}

func (c echo3dClient) do(req *http.Request) (int, string, error) {
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, string(body), fmt.Errorf("echo3D answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return resp.StatusCode, string(body), nil
}

// answerText summarises an echo3D answer in one line.
func answerText(status int, body string) string {
	body = strings.Join(strings.Fields(body), " ")
	if len(body) > 80 {
		body = body[:77] + "..."
	}
	return fmt.Sprintf("%d %s", status, body)
}

func joinTriggers(ts []events.Trigger) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}
