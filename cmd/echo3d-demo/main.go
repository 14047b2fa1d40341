// Command echo3d-demo shows caddy-echo3d-webhooks working end to end
// without the real echo3D API, all on loopback:
//
//   - a fake echo3D API (internal/echo3dtest);
//   - Caddy with the plugin (./bin/caddy, a child process) in front of it;
//   - an HTTPS webhook receiver (self-signed certificate, trusted by Caddy
//     through trusted_ca_file) that prints every delivery and whether its
//     Standard Webhooks signature verifies.
//
// It registers a webhook through the admin API, sends a short scripted
// session through the proxy (upload, edit, metadata add and remove, delete)
// so every derivable trigger is delivered, and then keeps running for the
// user's own requests until Ctrl-C. With --once it exits after the script,
// with status 1 if a scripted trigger was not delivered and verified.
//
// Run it with `./xcaddy.sh demo`, which builds ./bin/caddy first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// options are the demo's command-line settings.
type options struct {
	caddy        string
	proxyPort    int
	adminPort    int
	echo3dPort   int
	receiverPort int
	apiKey       string
	once         bool
	timeout      time.Duration
	verbose      bool
}

// Default ports; they differ from Caddyfile.example's (8080, admin 2019) so
// the demo and `./xcaddy.sh run` can run side by side.
const (
	defaultProxyPort = 9080
	defaultAdminPort = 9019
)

// parseFlags reads the command line. It returns flag.ErrHelp for -h.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("echo3d-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: echo3d-demo [flags]

Runs caddy-echo3d-webhooks on loopback in front of a fake echo3D API, with a
local HTTPS webhook receiver that prints every delivery. It registers a
webhook, sends a scripted session through the proxy, then waits for your own
requests until Ctrl-C (or exits after the script with --once).

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.caddy, "caddy", "./bin/caddy", "Caddy binary with the plugin (./xcaddy.sh build makes it)")
	fs.IntVar(&o.proxyPort, "proxy-port", defaultProxyPort, "loopback port of the proxy that echo3D clients call (0: any free port)")
	fs.IntVar(&o.adminPort, "admin-port", defaultAdminPort, "loopback port of Caddy's admin API (0: any free port)")
	fs.IntVar(&o.echo3dPort, "echo3d-port", 0, "loopback port of the fake echo3D API (0: any free port)")
	fs.IntVar(&o.receiverPort, "receiver-port", 0, "loopback port of the HTTPS webhook receiver (0: any free port)")
	fs.StringVar(&o.apiKey, "api-key", "demo-key", "echo3D collection key used by the script and the demo webhook")
	fs.BoolVar(&o.once, "once", false, "exit after the scripted session; status 1 if a trigger was not delivered and verified")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "with --once, how long the scripted session may take")
	fs.BoolVar(&o.verbose, "verbose", false, "copy Caddy's log to stderr (otherwise it goes to a file in the demo's temporary directory)")
	// The flag package prints its own errors; fail prints the others.
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fail := func(format string, args ...any) (options, error) {
		err := fmt.Errorf(format, args...)
		fmt.Fprintf(stderr, "echo3d-demo: %v\nRun echo3d-demo -h for usage.\n", err)
		return o, err
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	for _, p := range []struct {
		name string
		port int
	}{{"proxy-port", o.proxyPort}, {"admin-port", o.adminPort}, {"echo3d-port", o.echo3dPort}, {"receiver-port", o.receiverPort}} {
		if p.port < 0 || p.port > 65535 {
			return fail("-%s: %d is not a port", p.name, p.port)
		}
	}
	if o.apiKey == "" {
		return fail("-api-key must not be empty")
	}
	if o.timeout <= 0 {
		return fail("-timeout must be positive")
	}
	return o, nil
}

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2) // parseFlags printed why
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, opts, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo3d-demo:", err)
		os.Exit(1)
	}
	if opts.once && !rep.complete() {
		os.Exit(1)
	}
}
