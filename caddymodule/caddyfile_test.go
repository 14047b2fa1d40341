package caddymodule

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestAppUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  App
	}{
		{"empty", `echo3d_webhooks`, App{}},
		{"empty block", `echo3d_webhooks {
		}`, App{}},
		{"everything", `echo3d_webhooks {
			storage /var/lib/hooks
			retry 1s 1m 1h
			timeout 3s
			allow_private_targets
			trusted_ca_file a.pem b.pem
			trusted_ca_file c.pem
			secret_overlap 2h
			workers 8
			per_webhook 2
		}`, App{
			Storage:             "/var/lib/hooks",
			Retry:               []caddy.Duration{caddy.Duration(time.Second), caddy.Duration(time.Minute), caddy.Duration(time.Hour)},
			Timeout:             caddy.Duration(3 * time.Second),
			AllowPrivateTargets: true,
			TrustedCAFiles:      []string{"a.pem", "b.pem", "c.pem"},
			SecretOverlap:       caddy.Duration(2 * time.Hour),
			Workers:             8,
			PerWebhook:          2,
		}},
		{"memory and env", `echo3d_webhooks {
			storage memory
		}`, App{Storage: "memory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got App
			if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestAppUnmarshalCaddyfileErrors(t *testing.T) {
	for name, tc := range map[string]struct{ input, msg string }{
		"argument on option line": {`echo3d_webhooks x`, "wrong argument count"},
		"unknown option":          {"echo3d_webhooks {\n\tcolour red\n}", `unrecognized echo3d_webhooks option "colour"`},
		"duplicate storage":       {"echo3d_webhooks {\n\tstorage a\n\tstorage b\n}", `duplicate option "storage"`},
		"storage without dir":     {"echo3d_webhooks {\n\tstorage\n}", "wrong argument count"},
		"storage two dirs":        {"echo3d_webhooks {\n\tstorage a b\n}", "wrong argument count"},
		"retry empty":             {"echo3d_webhooks {\n\tretry\n}", "wrong argument count"},
		"retry bad":               {"echo3d_webhooks {\n\tretry 5s soon\n}", `retry: bad delay "soon"`},
		"retry zero":              {"echo3d_webhooks {\n\tretry 0s\n}", "must be positive"},
		"timeout bad":             {"echo3d_webhooks {\n\ttimeout fast\n}", `timeout: bad duration "fast"`},
		"timeout negative":        {"echo3d_webhooks {\n\ttimeout -1s\n}", "must be positive"},
		"allow with arg":          {"echo3d_webhooks {\n\tallow_private_targets yes\n}", "wrong argument count"},
		"workers zero":            {"echo3d_webhooks {\n\tworkers 0\n}", "workers: must be a positive integer"},
		"per_webhook word":        {"echo3d_webhooks {\n\tper_webhook many\n}", "per_webhook: must be a positive integer"},
	} {
		t.Run(name, func(t *testing.T) {
			var a App
			err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil {
				t.Fatalf("no error for %q", tc.input)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %q should contain %q and name the line", err, tc.msg)
			}
		})
	}
}

func TestHandlerUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  Handler
	}{
		{"bare", `echo3d_webhooks`, Handler{}},
		{"everything", `echo3d_webhooks {
			delete_params entryIds ids
			edit_params entryId
			max_field_size 32KiB
			max_form_size 2MiB
			max_response_size 512KB
			lookup_timeout 3s
		}`, Handler{
			DeleteParams:    []string{"entryIds", "ids"},
			EditParams:      []string{"entryId"},
			MaxFieldSize:    32 << 10,
			MaxFormSize:     2 << 20,
			MaxResponseSize: 512000,
			LookupTimeout:   caddy.Duration(3 * time.Second),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Handler
			if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestHandlerUnmarshalCaddyfileErrors(t *testing.T) {
	for name, tc := range map[string]struct{ input, msg string }{
		"inline argument":      {`echo3d_webhooks on`, "wrong argument count"},
		"unknown option":       {"echo3d_webhooks {\n\tlog_keys\n}", `unrecognized echo3d_webhooks option "log_keys"`},
		"duplicate":            {"echo3d_webhooks {\n\tedit_params a\n\tedit_params b\n}", `duplicate option "edit_params"`},
		"delete_params empty":  {"echo3d_webhooks {\n\tdelete_params\n}", "wrong argument count"},
		"bad size":             {"echo3d_webhooks {\n\tmax_field_size lots\n}", `max_field_size: bad size "lots"`},
		"zero size":            {"echo3d_webhooks {\n\tmax_response_size 0\n}", "out of range"},
		"size two args":        {"echo3d_webhooks {\n\tmax_form_size 1MB 2MB\n}", "wrong argument count"},
		"bad lookup_timeout":   {"echo3d_webhooks {\n\tlookup_timeout never\n}", `lookup_timeout: bad duration "never"`},
		"lookup_timeout empty": {"echo3d_webhooks {\n\tlookup_timeout\n}", "wrong argument count"},
	} {
		t.Run(name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil {
				t.Fatalf("no error for %q", tc.input)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %q should contain %q and name the line", err, tc.msg)
			}
		})
	}
}
