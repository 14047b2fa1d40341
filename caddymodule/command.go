package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  cliName,
		Usage: "<list|add|get|delete|test|deliveries|redeliver|rotate-secret> [flags]",
		Short: "Manages echo3D webhooks through the admin API",
		Long: `
Manages the webhooks of caddy-echo3d-webhooks by calling the /echo3d/ routes
of a running Caddy's admin API.

The admin endpoint is --address if given, else the "admin" address of the
--config file, else $CADDY_ADMIN, else localhost:2019: the same rules as
'caddy stop' and 'caddy reload'.

Output is a table, or the API's JSON as is with --json. Errors are printed to
stderr as "error: <message>". Exit status: 0 on success, 1 when the request
fails (Caddy unreachable, input refused, unknown id), 2 on wrong usage.
`,
		CobraFunc: setupCLI,
	})
}

// cliName is the name of the command under `caddy`.
const cliName = "echo3d-webhooks"

// cliTimeout bounds one admin API call; creating a webhook resolves its
// host, which takes up to urlCheckTimeout.
const cliTimeout = 30 * time.Second

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// apiFailure is an error answer of the admin API.
type apiFailure struct {
	status int
	msg    string
}

func (e apiFailure) Error() string { return e.msg }

// errReported ends a command with status 1 after its message was printed.
var errReported = errors.New("reported")

// exitStatus returns an error that makes Caddy's main exit with status
// code (above 1) without printing anything more; Caddy's command API has no
// other way to pick a status from a cobra command.
func exitStatus(code int) error {
	run := caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return code, nil })
	return run(&cobra.Command{}, nil)
}

// cli holds the global flags of one invocation.
type cli struct {
	address, config, adapter string
	json                     bool
}

// setupCLI adds the subcommands and flags to the echo3d-webhooks command.
func setupCLI(cmd *cobra.Command) {
	c := new(cli)
	cmd.Example = `  $ caddy echo3d-webhooks add --name pipeline --url https://hooks.example.com/echo3d \
        --api-key quiet-river-1234 --trigger Upload,Processed --trigger Delete
  $ caddy echo3d-webhooks list --api-key quiet-river-1234
  $ caddy echo3d-webhooks test wh_0123… --event Upload
  $ caddy echo3d-webhooks deliveries wh_0123… --limit 20
  $ caddy echo3d-webhooks get wh_0123… --json --address localhost:2019`
	pf := cmd.PersistentFlags()
	pf.StringVar(&c.address, "address", "", "Admin API address (default: the config's admin address, $CADDY_ADMIN or localhost:2019)")
	pf.StringVarP(&c.config, "config", "c", "", "Configuration file to read the admin address from")
	pf.StringVarP(&c.adapter, "adapter", "a", "", "Name of the config adapter for --config")
	pf.BoolVar(&c.json, "json", false, "Print the API's JSON answer instead of a table")
	// Caddy's root help footer points at Caddy's own docs; use cobra's plain one.
	cmd.SetHelpTemplate((&cobra.Command{}).HelpTemplate())
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SuggestionsMinimumDistance = 2
	cmd.SetFlagErrorFunc(func(sub *cobra.Command, err error) error {
		return report(sub, usageError{err.Error()})
	})
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return report(cmd, usagef("a subcommand is required"))
		}
		msg := fmt.Sprintf("unknown subcommand %q", args[0])
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf("; did you mean %q?", s[0])
		}
		return report(cmd, usageError{msg})
	}
	cmd.AddCommand(c.listCmd(), c.addCmd(), c.getCmd(), c.deleteCmd(), c.testCmd(),
		c.deliveriesCmd(), c.redeliverCmd(), c.rotateCmd())
}

// subcommand returns a subcommand that takes exactly len(argNames)
// arguments and runs run, reporting its error.
func subcommand(use, short, long string, argNames []string, run func(*cobra.Command, []string) error) *cobra.Command {
	return &cobra.Command{
		Use:           use,
		Short:         short,
		Long:          strings.TrimSpace(long),
		Args:          cobra.ArbitraryArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) > len(argNames):
				return report(cmd, usagef("unexpected argument %q", args[len(argNames)]))
			case len(args) < len(argNames):
				return report(cmd, usagef("missing argument %s", argNames[len(args)]))
			}
			return report(cmd, run(cmd, args))
		},
	}
}

func (c *cli) listCmd() *cobra.Command {
	var apiKey string
	cmd := subcommand("list [--api-key <key>]", "Lists webhooks (without secrets)", `
Lists every webhook, or with --api-key only those of one collection.
Secrets are not listed; 'get' shows one.`, nil, func(cmd *cobra.Command, _ []string) error {
		uri := "/echo3d/webhooks"
		if apiKey != "" {
			uri += "?apiKey=" + url.QueryEscape(apiKey)
		}
		var hooks []webhookView
		raw, err := c.call(cmd, http.MethodGet, uri, nil, &hooks)
		if err != nil || c.json {
			return c.finish(cmd, raw, err)
		}
		if len(hooks) == 0 {
			fmt.Fprintln(cmd.ErrOrStderr(), "No webhooks.")
			return nil
		}
		tw := newTable(cmd.OutOrStdout())
		fmt.Fprintln(tw, "ID\tNAME\tAPI KEY\tTRIGGERS\tENABLED\tURL")
		for _, h := range hooks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, cell(h.Name, 30), cell(h.APIKey, 30),
				triggersText(h.Triggers), enabledText(h), h.URL)
		}
		return tw.Flush()
	})
	cmd.Flags().StringVar(&apiKey, "api-key", "", "Only the webhooks of this collection key")
	return cmd
}

func (c *cli) addCmd() *cobra.Command {
	var in struct {
		name, url, apiKey, description string
		triggers                       []string
		disabled                       bool
	}
	long := `
Creates a webhook for some triggers of one collection and prints it with
its signing secret (whsec_…), which receivers need to verify deliveries.

--trigger may be repeated or take a comma-separated list. Triggers:
` + wrapText(triggerList()+".", 76) + `

Webhook URLs must be https://. Private and loopback hosts are refused unless
the echo3d_webhooks app has allow_private_targets.`
	cmd := subcommand("add --name <name> --url <https url> --api-key <key> --trigger <trigger>[,<trigger>...] [--description <text>]",
		"Creates a webhook and prints its secret", long, nil, func(cmd *cobra.Command, _ []string) error {
			var missing []string
			for _, f := range []struct{ flag, val string }{{"--name", in.name}, {"--url", in.url}, {"--api-key", in.apiKey}} {
				if strings.TrimSpace(f.val) == "" {
					missing = append(missing, f.flag)
				}
			}
			if len(in.triggers) == 0 {
				missing = append(missing, "--trigger")
			}
			if len(missing) > 0 {
				return usagef("missing %s", strings.Join(missing, ", "))
			}
			enabled := !in.disabled
			body := webhookInput{Name: &in.name, URL: &in.url, APIKey: &in.apiKey, Triggers: &in.triggers, Enabled: &enabled}
			if in.description != "" {
				body.Description = &in.description
			}
			var hook webhookView
			raw, err := c.call(cmd, http.MethodPost, "/echo3d/webhooks", body, &hook)
			if err != nil || c.json {
				return c.finish(cmd, raw, err)
			}
			return printWebhook(cmd.OutOrStdout(), hook)
		})
	f := cmd.Flags()
	f.StringVar(&in.name, "name", "", "Name of the webhook (required)")
	f.StringVar(&in.url, "url", "", "https:// URL that receives the deliveries (required)")
	f.StringVar(&in.apiKey, "api-key", "", "Collection key whose events the webhook receives (required)")
	f.StringSliceVar(&in.triggers, "trigger", nil, "Trigger to subscribe to; repeat or separate with commas (required)")
	f.StringVar(&in.description, "description", "", "Free text")
	f.BoolVar(&in.disabled, "disabled", false, "Create the webhook disabled")
	return cmd
}

func (c *cli) getCmd() *cobra.Command {
	return subcommand("get <webhook-id>", "Shows a webhook with its secret", `
Shows one webhook, including its current signing secret.`, []string{"<webhook-id>"}, func(cmd *cobra.Command, args []string) error {
		var hook webhookView
		raw, err := c.call(cmd, http.MethodGet, "/echo3d/webhooks/"+url.PathEscape(args[0]), nil, &hook)
		if err != nil || c.json {
			return c.finish(cmd, raw, err)
		}
		return printWebhook(cmd.OutOrStdout(), hook)
	})
}

func (c *cli) deleteCmd() *cobra.Command {
	return subcommand("delete <webhook-id>", "Deletes a webhook", `
Deletes a webhook. Its pending deliveries are not sent.`, []string{"<webhook-id>"}, func(cmd *cobra.Command, args []string) error {
		raw, err := c.call(cmd, http.MethodDelete, "/echo3d/webhooks/"+url.PathEscape(args[0]), nil, nil)
		if err != nil || c.json {
			return c.finish(cmd, raw, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Deleted webhook %s.\n", args[0])
		return nil
	})
}

func (c *cli) testCmd() *cobra.Command {
	var event string
	cmd := subcommand("test <webhook-id> [--event <trigger>]", "Sends a signed test event to a webhook", `
Queues a signed test delivery to the webhook. Its payload's event is "Test",
or with --event it imitates that trigger (entryIds ["test-entry"]). Follow
it with 'deliveries'.`, []string{"<webhook-id>"}, func(cmd *cobra.Command, args []string) error {
		var body any
		if event != "" {
			body = testInput{Event: event}
		}
		var d store.Delivery
		raw, err := c.call(cmd, http.MethodPost, "/echo3d/webhooks/"+url.PathEscape(args[0])+"/test", body, &d)
		if err != nil || c.json {
			return c.finish(cmd, raw, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Queued test delivery %s to webhook %s.\n", d.ID, d.WebhookID)
		fmt.Fprintf(cmd.ErrOrStderr(), "Follow it with: caddy %s deliveries %s\n", cliName, d.WebhookID)
		return nil
	})
	cmd.Flags().StringVar(&event, "event", "", "Trigger the test event imitates (default: event \"Test\")")
	return cmd
}

func (c *cli) deliveriesCmd() *cobra.Command {
	var limit int
	var cursor string
	cmd := subcommand("deliveries <webhook-id> [--limit <n>] [--cursor <cursor>]", "Lists a webhook's delivery attempts", `
Lists the HTTP attempts made to a webhook, newest first. When there are more
than --limit, the command prints the --cursor that shows the next page.`, []string{"<webhook-id>"}, func(cmd *cobra.Command, args []string) error {
		if limit < 1 || limit > 500 {
			return usagef("--limit must be from 1 to 500, got %d", limit)
		}
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Attempts   []store.Attempt `json:"attempts"`
			NextCursor string          `json:"nextCursor"`
		}
		raw, err := c.call(cmd, http.MethodGet, "/echo3d/webhooks/"+url.PathEscape(args[0])+"/deliveries?"+q.Encode(), nil, &page)
		if err != nil || c.json {
			return c.finish(cmd, raw, err)
		}
		if len(page.Attempts) == 0 {
			fmt.Fprintln(cmd.ErrOrStderr(), "No delivery attempts.")
			return nil
		}
		tw := newTable(cmd.OutOrStdout())
		fmt.Fprintln(tw, "TIME\tDELIVERY\tATTEMPT\tSTATUS\tDURATION\tERROR")
		for _, a := range page.Attempts {
			status := "-"
			if a.Status != 0 {
				status = strconv.Itoa(a.Status)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", a.At.Local().Format(time.DateTime), a.DeliveryID, a.Number,
				status, a.Duration.Round(time.Millisecond), cell(a.Error, 60))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if page.NextCursor != "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "More: caddy %s deliveries %s --cursor %s\n", cliName, args[0], page.NextCursor)
		}
		return nil
	})
	cmd.Flags().IntVar(&limit, "limit", 50, "Attempts per page (1 to 500)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "Cursor printed by the previous page")
	return cmd
}

func (c *cli) redeliverCmd() *cobra.Command {
	return subcommand("redeliver <delivery-id>", "Sends a recorded event again", `
Queues a new delivery of the event of a recorded delivery (msg_…, the
DELIVERY column of 'deliveries') to the same webhook.`, []string{"<delivery-id>"}, func(cmd *cobra.Command, args []string) error {
		var d store.Delivery
		raw, err := c.call(cmd, http.MethodPost, "/echo3d/deliveries/"+url.PathEscape(args[0])+"/redeliver", nil, &d)
		if err != nil || c.json {
			return c.finish(cmd, raw, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Queued delivery %s (again the event of %s) to webhook %s.\n", d.ID, args[0], d.WebhookID)
		return nil
	})
}

func (c *cli) rotateCmd() *cobra.Command {
	var overlap string
	cmd := subcommand("rotate-secret <webhook-id> [--overlap <duration>]", "Gives a webhook a new signing secret", `
Gives the webhook a new secret and prints it. For --overlap (default: the
app's secret_overlap, 24h) the old secret keeps signing next to the new one,
so receivers can switch without rejecting deliveries.`, []string{"<webhook-id>"}, func(cmd *cobra.Command, args []string) error {
		uri := "/echo3d/webhooks/" + url.PathEscape(args[0]) + "/rotate-secret"
		if overlap != "" {
			uri += "?overlap=" + url.QueryEscape(overlap)
		}
		var hook webhookView
		raw, err := c.call(cmd, http.MethodPost, uri, nil, &hook)
		if err != nil || c.json {
			return c.finish(cmd, raw, err)
		}
		return printWebhook(cmd.OutOrStdout(), hook)
	})
	cmd.Flags().StringVar(&overlap, "overlap", "", "How long the old secret keeps signing, e.g. 1h")
	return cmd
}

// report prints err as "error: <message>" on stderr and turns it into the
// exit status: 2 for usage errors (with a pointer to --help), 1 otherwise.
func report(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "error: %s\n", err)
	if errors.As(err, new(usageError)) {
		fmt.Fprintf(cmd.ErrOrStderr(), "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitStatus(2)
	}
	return errReported
}

// finish ends a command that printed nothing yet: on error it returns it,
// with --json it prints the API's answer unchanged.
func (c *cli) finish(cmd *cobra.Command, raw []byte, err error) error {
	if err != nil {
		return err
	}
	_, err = cmd.OutOrStdout().Write(raw)
	return err
}

// call sends one request to the admin API and decodes a successful JSON
// answer into out (when not nil). It returns the answer's bytes.
func (c *cli) call(cmd *cobra.Command, method, uri string, body, out any) ([]byte, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(c.address, nil, c.config, c.adapter)
	if err != nil {
		return nil, usagef("finding the admin API address: %v", err)
	}
	origin, dialNet, dialAddr, err := adminTarget(addr)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), cliTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, origin+uri, rd)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	// The admin endpoint checks Host, and Origin when enforce_origin is on.
	req.Header.Set("Origin", origin)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, dialNet, dialAddr)
		},
	}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Caddy's admin API at %s (is Caddy running? see --address): %w", addr, unwrapURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s %s: %w", method, uri, err)
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(raw)))
		}
		return nil, apiFailure{resp.StatusCode, e.Error}
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("decoding the answer of %s %s: %w", method, uri, err)
		}
	}
	return raw, nil
}

// adminTarget returns the URL origin and the dial target of an admin
// address, as `caddy stop` and `caddy reload` use it.
func adminTarget(addr string) (origin, network, dial string, err error) {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil || na.PortRangeSize() > 1 {
		return "", "", "", usagef("invalid admin address %q", addr)
	}
	switch {
	case na.IsUnixNetwork():
		// A socket path may carry permission bits after '|'.
		path, _, _ := strings.Cut(na.Host, "|")
		return "http://127.0.0.1", na.Network, path, nil
	case na.IsFdNetwork():
		return "", "", "", usagef("admin address %q is a file descriptor; use a TCP or unix address", addr)
	}
	hostPort := na.JoinHostPort(0)
	return "http://" + hostPort, na.Network, hostPort, nil
}

// unwrapURLError drops the "Get "http://…": " prefix of client errors.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// wrapText breaks s into lines of at most width bytes at spaces.
func wrapText(s string, width int) string {
	var b strings.Builder
	n := 0
	for _, word := range strings.Fields(s) {
		switch {
		case n == 0:
		case n+1+len(word) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// cell flattens s to one line of at most n runes for a table cell.
func cell(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// triggersText shortens a trigger list for a table: "all" when it holds
// every trigger.
func triggersText(triggers []string) string {
	if len(triggers) == len(events.AllTriggers) {
		all := true
		for _, t := range events.AllTriggers {
			all = all && contains(triggers, string(t))
		}
		if all {
			return "all"
		}
	}
	return strings.Join(triggers, ",")
}

func enabledText(h webhookView) string {
	switch {
	case h.Enabled:
		return "yes"
	case h.DisabledReason != "":
		return "no (" + h.DisabledReason + ")"
	}
	return "no"
}

// printWebhook prints one webhook as aligned "Field: value" lines.
func printWebhook(w io.Writer, h webhookView) error {
	tw := newTable(w)
	rows := [][2]string{
		{"ID", h.ID},
		{"Name", h.Name},
		{"URL", h.URL},
		{"Description", h.Description},
		{"API key", h.APIKey},
		{"Triggers", strings.Join(h.Triggers, ", ")},
		{"Enabled", enabledText(h)},
		{"Secret", h.Secret},
		{"Created", h.CreatedAt.Local().Format(time.DateTime)},
		{"Updated", h.UpdatedAt.Local().Format(time.DateTime)},
	}
	for _, r := range rows {
		if r[1] == "" && (r[0] == "Description" || r[0] == "Secret") {
			continue
		}
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}
