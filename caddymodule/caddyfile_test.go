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
			allow_targets 10.20.0.0/16 hooks.internal
			allow_targets *.corp.example fd00::1
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
			AllowTargets:        []string{"10.20.0.0/16", "hooks.internal", "*.corp.example", "fd00::1"},
			TrustedCAFiles:      []string{"a.pem", "b.pem", "c.pem"},
			SecretOverlap:       caddy.Duration(2 * time.Hour),
			Workers:             8,
			PerWebhook:          2,
		}},
		{"limits", `echo3d_webhooks {
			max_webhooks_per_collection 20
			min_free_space 1GiB
		}`, App{MaxWebhooksPerCollection: 20, MinFreeSpace: 1 << 30}},
		{"processed watches", `echo3d_webhooks {
			processed_poll 5s 2m 3h
			max_watches 50
			collection quiet-river-1234 {
				email {env.ECHO3D_EMAIL}
				user_key {env.ECHO3D_USER_KEY}
				sec_key {env.ECHO3D_SEC_KEY}
			}
			collection other-key-1 {
				user_key uk_literal
			}
		}`, App{
			ProcessedPollFirst: caddy.Duration(5 * time.Second),
			ProcessedPollMax:   caddy.Duration(2 * time.Minute),
			ProcessedGiveUp:    caddy.Duration(3 * time.Hour),
			MaxWatches:         50,
			Collections: map[string]Collection{
				"quiet-river-1234": {Email: "{env.ECHO3D_EMAIL}", UserKey: "{env.ECHO3D_USER_KEY}", SecKey: "{env.ECHO3D_SEC_KEY}"},
				"other-key-1":      {UserKey: "uk_literal"},
			},
		}},
		{"processed_poll first only", `echo3d_webhooks {
			processed_poll 30s
		}`, App{ProcessedPollFirst: caddy.Duration(30 * time.Second)}},
		{"breaker and disable_after", `echo3d_webhooks {
			breaker {
				failure_ratio 0.7
				min_attempts 20
				window 1m
				pause 10s
				max_pause 5m
			}
			disable_after 120h
		}`, App{
			Breaker: &BreakerOptions{
				FailureRatio: 0.7,
				MinAttempts:  20,
				Window:       caddy.Duration(time.Minute),
				Pause:        caddy.Duration(10 * time.Second),
				MaxPause:     caddy.Duration(5 * time.Minute),
			},
			DisableAfter: caddy.Duration(120 * time.Hour),
		}},
		{"breaker off, never disable", `echo3d_webhooks {
			breaker off
			disable_after off
		}`, App{Breaker: &BreakerOptions{Off: true}, DisableAfter: -1}},
		{"ordering concurrent", `echo3d_webhooks {
			per_webhook 16
			ordering concurrent
		}`, App{PerWebhook: 16, Ordering: "concurrent"}},
		{"ordering strict", `echo3d_webhooks {
			ordering strict
		}`, App{Ordering: "strict"}},
		{"versions 1.1", `echo3d_webhooks {
			versions 1.1
		}`, App{Versions: []string{"1.1"}}},
		{"versions 1.1 2", `echo3d_webhooks {
			versions 1.1 2
		}`, App{Versions: []string{"1.1", "2"}}},
		{"versions 2 1.1", `echo3d_webhooks {
			versions 2 1.1
		}`, App{Versions: []string{"2", "1.1"}}},
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
		"processed_poll empty":    {"echo3d_webhooks {\n\tprocessed_poll\n}", "wrong argument count"},
		"processed_poll four":     {"echo3d_webhooks {\n\tprocessed_poll 1s 2s 3s 4s\n}", "wrong argument count"},
		"processed_poll bad":      {"echo3d_webhooks {\n\tprocessed_poll soon\n}", `processed_poll: bad duration "soon"`},
		"processed_poll zero":     {"echo3d_webhooks {\n\tprocessed_poll 1s 0s\n}", "must be positive"},
		"processed_poll cap low":  {"echo3d_webhooks {\n\tprocessed_poll 1m 10s\n}", "below the first interval"},
		"processed_poll twice":    {"echo3d_webhooks {\n\tprocessed_poll 1s\n\tprocessed_poll 2s\n}", `duplicate option "processed_poll"`},
		"max_watches zero":        {"echo3d_webhooks {\n\tmax_watches 0\n}", "max_watches: must be a positive integer"},
		"collection no key":       {"echo3d_webhooks {\n\tcollection {\n\t\tuser_key x\n\t}\n}", "wrong argument count"},
		"collection two keys":     {"echo3d_webhooks {\n\tcollection a b {\n\t\tuser_key x\n\t}\n}", "wrong argument count"},
		"collection empty":        {"echo3d_webhooks {\n\tcollection a {\n\t}\n}", `collection "a": needs at least one`},
		"collection twice":        {"echo3d_webhooks {\n\tcollection a {\n\t\tuser_key x\n\t}\n\tcollection a {\n\t\tsec_key y\n\t}\n}", `collection "a": configured twice`},
		"collection unknown":      {"echo3d_webhooks {\n\tcollection a {\n\t\tpassword x\n\t}\n}", `collection "a": unrecognized option "password"`},
		"collection dup option":   {"echo3d_webhooks {\n\tcollection a {\n\t\tuser_key x\n\t\tuser_key y\n\t}\n}", `collection "a": duplicate option "user_key"`},
		"collection no value":     {"echo3d_webhooks {\n\tcollection a {\n\t\temail\n\t}\n}", "wrong argument count"},
		"collection two values":   {"echo3d_webhooks {\n\tcollection a {\n\t\temail a b\n\t}\n}", "wrong argument count"},
		"allow_targets empty":     {"echo3d_webhooks {\n\tallow_targets\n}", "wrong argument count"},
		"allow_targets bad cidr":  {"echo3d_webhooks {\n\tallow_targets 10.0.0.0/33\n}", `allow_targets: allow target "10.0.0.0/33"`},
		"allow_targets url":       {"echo3d_webhooks {\n\tallow_targets https://hooks.internal\n}", `allow target "https://hooks.internal"`},
		"max_webhooks zero":       {"echo3d_webhooks {\n\tmax_webhooks_per_collection 0\n}", "max_webhooks_per_collection: must be a positive integer"},
		"min_free_space zero":     {"echo3d_webhooks {\n\tmin_free_space 0\n}", "min_free_space: size \"0\" out of range"},
		"min_free_space bad":      {"echo3d_webhooks {\n\tmin_free_space lots\n}", `min_free_space: bad size "lots"`},
		"breaker unknown":         {"echo3d_webhooks {\n\tbreaker {\n\t\tthreshold 3\n\t}\n}", `breaker: unrecognized option "threshold"`},
		"breaker bad arg":         {"echo3d_webhooks {\n\tbreaker on\n}", `breaker: want 'off' or a block`},
		"breaker off twice":       {"echo3d_webhooks {\n\tbreaker off off\n}", `breaker: want 'off' or a block`},
		"breaker ratio high":      {"echo3d_webhooks {\n\tbreaker {\n\t\tfailure_ratio 1.5\n\t}\n}", "failure_ratio must be a number above 0"},
		"breaker ratio zero":      {"echo3d_webhooks {\n\tbreaker {\n\t\tfailure_ratio 0\n\t}\n}", "failure_ratio must be a number above 0"},
		"breaker dup option":      {"echo3d_webhooks {\n\tbreaker {\n\t\tpause 1s\n\t\tpause 2s\n\t}\n}", `breaker: duplicate option "pause"`},
		"breaker pause zero":      {"echo3d_webhooks {\n\tbreaker {\n\t\tpause 0s\n\t}\n}", "must be positive"},
		"breaker min_attempts 0":  {"echo3d_webhooks {\n\tbreaker {\n\t\tmin_attempts 0\n\t}\n}", "min_attempts: must be a positive integer"},
		"breaker twice":           {"echo3d_webhooks {\n\tbreaker off\n\tbreaker off\n}", `duplicate option "breaker"`},
		"disable_after empty":     {"echo3d_webhooks {\n\tdisable_after\n}", "wrong argument count"},
		"disable_after bad":       {"echo3d_webhooks {\n\tdisable_after never\n}", `disable_after: bad duration "never"`},
		"disable_after two":       {"echo3d_webhooks {\n\tdisable_after off 1h\n}", "wrong argument count"},
		"ordering empty":          {"echo3d_webhooks {\n\tordering\n}", "wrong argument count"},
		"ordering unknown":        {"echo3d_webhooks {\n\tordering fifo\n}", `ordering: want "strict" or "concurrent", got "fifo"`},
		"ordering case":           {"echo3d_webhooks {\n\tordering Strict\n}", `ordering: want "strict" or "concurrent", got "Strict"`},
		"ordering two":            {"echo3d_webhooks {\n\tordering strict concurrent\n}", "wrong argument count"},
		"ordering twice":          {"echo3d_webhooks {\n\tordering strict\n\tordering concurrent\n}", `duplicate option "ordering"`},
		"versions empty":          {"echo3d_webhooks {\n\tversions\n}", "wrong argument count"},
		"versions unknown":        {"echo3d_webhooks {\n\tversions 1.1 3\n}", `versions: must be "1.1" or "2", got "3"`},
		"versions h2 name":        {"echo3d_webhooks {\n\tversions 1.1 h2\n}", `versions: must be "1.1" or "2", got "h2"`},
		"versions 2 alone":        {"echo3d_webhooks {\n\tversions 2\n}", `versions: must include "1.1" (HTTP/2 alone is not supported), got ["2"]`},
		"versions twice":          {"echo3d_webhooks {\n\tversions 1.1\n\tversions 2\n}", `duplicate option "versions"`},
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

// TestValidateDeliveryOptions: the JSON config takes the ordering and
// versions the Caddyfile takes, and names the field when it refuses a
// value.
func TestValidateDeliveryOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		app  App
		err  string
	}{
		{"ordering default", App{}, ""},
		{"ordering strict", App{Ordering: "strict"}, ""},
		{"ordering concurrent", App{Ordering: "concurrent"}, ""},
		{"ordering fifo", App{Ordering: "fifo"}, `ordering: must be "strict" or "concurrent", got "fifo"`},
		{"ordering Concurrent", App{Ordering: "Concurrent"}, `ordering: must be "strict" or "concurrent", got "Concurrent"`},
		{"versions 1.1", App{Versions: []string{"1.1"}}, ""},
		{"versions 1.1 2", App{Versions: []string{"1.1", "2"}}, ""},
		{"versions 2 1.1", App{Versions: []string{"2", "1.1"}}, ""},
		{"versions 2 alone", App{Versions: []string{"2"}}, `versions: must include "1.1" (HTTP/2 alone is not supported), got ["2"]`},
		{"versions unknown", App{Versions: []string{"1.1", "3"}}, `versions: must be "1.1" or "2", got "3"`},
		{"versions h2c", App{Versions: []string{"1.1", "h2c"}}, `versions: must be "1.1" or "2", got "h2c"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.app.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.err != "" && (err == nil || err.Error() != tc.err):
				t.Errorf("Validate = %v, want %q", err, tc.err)
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
