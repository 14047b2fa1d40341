package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/sink"
)

func init() {
	httpcaddyfile.RegisterGlobalOption(appID, parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective(appID, parseHandlerDirective)
	// After encode: the handler sees the upstream's bytes, not our own
	// compression, and wraps proxies nested in handle/route blocks.
	httpcaddyfile.RegisterDirectiveOrder(appID, httpcaddyfile.After, "encode")
}

// parseGlobalOption parses the echo3d_webhooks global option into the app.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the echo3d_webhooks global option may appear only once")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: appID, Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens. Syntax:
//
//	echo3d_webhooks {
//		storage <dir> | memory
//		retry <delay> [<delay>...]
//		timeout <duration>
//		allow_private_targets
//		allow_targets <cidr|ip|host> [...]
//		max_webhooks_per_collection <n>
//		min_free_space <size>
//		trusted_ca_file <pem file>
//		secret_overlap <duration>
//		workers <n>
//		per_webhook <n>
//		ordering strict | concurrent
//		versions 1.1 [2]
//		breaker off | {
//			failure_ratio <0..1>
//			min_attempts <n>
//			window <duration>
//			pause <duration>
//			max_pause <duration>
//		}
//		disable_after <duration> | off
//		processed_poll <first> [<max> [<give_up>]]
//		max_watches <n>
//		collection <key> {
//			email <value>
//			user_key <value>
//			sec_key <value>
//		}
//	}
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] && name != "trusted_ca_file" && name != "allow_targets" && name != "collection" {
			return d.Errf("duplicate option %q", name)
		}
		seen[name] = true
		switch name {
		case "storage":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.Storage = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "retry":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, s := range args {
				dur, err := caddy.ParseDuration(s)
				if err != nil {
					return d.Errf("retry: bad delay %q: %v", s, err)
				}
				if dur <= 0 {
					return d.Errf("retry: delay %q must be positive", s)
				}
				a.Retry = append(a.Retry, caddy.Duration(dur))
			}
		case "timeout", "secret_overlap":
			dur, err := parseDurationArg(d)
			if err != nil {
				return err
			}
			if name == "timeout" {
				a.Timeout = dur
			} else {
				a.SecretOverlap = dur
			}
		case "allow_private_targets":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.AllowPrivateTargets = true
		case "allow_targets":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if _, _, err := sink.ParseAllowTargets(args); err != nil {
				return d.Errf("allow_targets: %v", err)
			}
			a.AllowTargets = append(a.AllowTargets, args...)
		case "max_webhooks_per_collection":
			n, err := parseIntArg(d)
			if err != nil {
				return err
			}
			a.MaxWebhooksPerCollection = n
		case "min_free_space":
			if !d.NextArg() {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(d.Val())
			if err != nil {
				return d.Errf("min_free_space: bad size %q: %v", d.Val(), err)
			}
			if size == 0 || size > 1<<50 {
				return d.Errf("min_free_space: size %q out of range", d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			a.MinFreeSpace = int64(size)
		case "trusted_ca_file":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.TrustedCAFiles = append(a.TrustedCAFiles, args...)
		case "workers", "per_webhook":
			n, err := parseIntArg(d)
			if err != nil {
				return err
			}
			if name == "workers" {
				a.Workers = n
			} else {
				a.PerWebhook = n
			}
		case "ordering":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch o := sink.Ordering(d.Val()); o {
			case sink.OrderingStrict, sink.OrderingConcurrent:
				a.Ordering = string(o)
			default:
				return d.Errf("ordering: want %q or %q, got %q", sink.OrderingStrict, sink.OrderingConcurrent, d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "versions":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if err := checkVersions(args); err != nil {
				return d.Errf("versions: %v", err)
			}
			a.Versions = args
		case "processed_poll":
			if err := a.parseProcessedPoll(d); err != nil {
				return err
			}
		case "breaker":
			if err := a.parseBreaker(d); err != nil {
				return err
			}
		case "disable_after":
			if err := a.parseDisableAfter(d); err != nil {
				return err
			}
		case "max_watches":
			n, err := parseIntArg(d)
			if err != nil {
				return err
			}
			a.MaxWatches = n
		case "collection":
			if err := a.parseCollection(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized echo3d_webhooks option %q", name)
		}
	}
	return nil
}

// parseHandlerDirective parses the echo3d_webhooks directive.
func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	echo3d_webhooks [<matcher>] {
//		delete_params <name> [<name>...]
//		edit_params <name> [<name>...]
//		max_field_size <size>
//		max_form_size <size>
//		max_response_size <size>
//		lookup_timeout <duration>
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("duplicate option %q", name)
		}
		seen[name] = true
		switch name {
		case "delete_params", "edit_params":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if name == "delete_params" {
				h.DeleteParams = args
			} else {
				h.EditParams = args
			}
		case "max_field_size", "max_form_size", "max_response_size":
			if !d.NextArg() {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(d.Val())
			if err != nil {
				return d.Errf("%s: bad size %q: %v", name, d.Val(), err)
			}
			if size == 0 || size > 1<<40 {
				return d.Errf("%s: size %q out of range", name, d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			switch name {
			case "max_field_size":
				h.MaxFieldSize = int64(size)
			case "max_form_size":
				h.MaxFormSize = int64(size)
			default:
				h.MaxResponseSize = int64(size)
			}
		case "lookup_timeout":
			dur, err := parseDurationArg(d)
			if err != nil {
				return err
			}
			h.LookupTimeout = dur
		default:
			return d.Errf("unrecognized echo3d_webhooks option %q", name)
		}
	}
	return nil
}

// parseDurationArg reads exactly one positive duration argument.
func parseDurationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil {
		return 0, d.Errf("%s: bad duration %q: %v", name, d.Val(), err)
	}
	if dur <= 0 {
		return 0, d.Errf("%s: duration %q must be positive", name, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return caddy.Duration(dur), nil
}

// parseIntArg reads exactly one positive integer argument.
func parseIntArg(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(d.Val())
	if err != nil || n < 1 {
		return 0, d.Errf("%s: must be a positive integer, got %q", name, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return n, nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
