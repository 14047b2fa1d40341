package store

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func testWebhook(id, apiKey string, created time.Time, triggers ...string) Webhook {
	return Webhook{
		ID:        id,
		Name:      "hook " + id,
		URL:       "https://example.com/" + id,
		Triggers:  triggers,
		APIKey:    apiKey,
		Enabled:   true,
		Secret:    "whsec_" + id,
		CreatedAt: created,
		UpdatedAt: created,
	}
}

func mustCreate(t testing.TB, s *Store, w Webhook) {
	t.Helper()
	if err := s.CreateWebhook(w); err != nil {
		t.Fatalf("CreateWebhook(%s): %v", w.ID, err)
	}
}

func webhookIDs(hooks []Webhook) []string {
	ids := []string{}
	for _, w := range hooks {
		ids = append(ids, w.ID)
	}
	return ids
}

func TestWebhookCRUD(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		// Created out of order: listing sorts by CreatedAt, then ID.
		mustCreate(t, s, testWebhook("c", "k1", t0.Add(time.Second), "create"))
		mustCreate(t, s, testWebhook("b", "k2", t0, "delete"))
		mustCreate(t, s, testWebhook("a", "k1", t0.Add(time.Second), "create", "delete"))

		if err := s.CreateWebhook(testWebhook("a", "k9", t0)); !errors.Is(err, ErrExists) {
			t.Errorf("duplicate CreateWebhook error = %v, want ErrExists", err)
		}
		for _, id := range []string{"", "x/y"} {
			if err := s.CreateWebhook(testWebhook(id, "k1", t0)); err == nil {
				t.Errorf("CreateWebhook(%q) succeeded", id)
			}
		}

		got, err := s.GetWebhook("a")
		if err != nil {
			t.Fatalf("GetWebhook: %v", err)
		}
		if want := testWebhook("a", "k1", t0.Add(time.Second), "create", "delete"); !webhookEqual(got, want) {
			t.Errorf("GetWebhook = %+v, want %+v", got, want)
		}
		// The result is a copy.
		got.Triggers[0] = "changed"
		if again, _ := s.GetWebhook("a"); again.Triggers[0] != "create" {
			t.Errorf("modifying a returned webhook changed the store: %v", again.Triggers)
		}
		if _, err := s.GetWebhook("nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetWebhook(missing) error = %v, want ErrNotFound", err)
		}

		lists := []struct {
			apiKey string
			want   []string
		}{
			{"", []string{"b", "a", "c"}},
			{"k1", []string{"a", "c"}},
			{"k2", []string{"b"}},
			{"none", []string{}},
		}
		for _, l := range lists {
			hooks, err := s.ListWebhooks(l.apiKey)
			if err != nil {
				t.Fatalf("ListWebhooks(%q): %v", l.apiKey, err)
			}
			if hooks == nil {
				t.Errorf("ListWebhooks(%q) = nil, want empty slice", l.apiKey)
			}
			if ids := webhookIDs(hooks); !slices.Equal(ids, l.want) {
				t.Errorf("ListWebhooks(%q) = %v, want %v", l.apiKey, ids, l.want)
			}
		}

		upd := testWebhook("b", "k1", t0, "update")
		upd.Name = "renamed"
		upd.Secret = "whsec_new"
		upd.PreviousSecrets = []PreviousSecret{{Secret: "whsec_b", ExpiresAt: t0.Add(time.Hour)}}
		if err := s.UpdateWebhook(upd); err != nil {
			t.Fatalf("UpdateWebhook: %v", err)
		}
		if got, _ := s.GetWebhook("b"); !webhookEqual(got, upd) {
			t.Errorf("after UpdateWebhook got %+v, want %+v", got, upd)
		}
		if hooks, _ := s.ListWebhooks("k1"); !slices.Equal(webhookIDs(hooks), []string{"b", "a", "c"}) {
			t.Errorf("after moving b to k1, ListWebhooks(k1) = %v", webhookIDs(hooks))
		}
		if hooks, _ := s.ListWebhooks("k2"); len(hooks) != 0 {
			t.Errorf("after moving b to k1, ListWebhooks(k2) = %v", webhookIDs(hooks))
		}
		if err := s.UpdateWebhook(testWebhook("nope", "k1", t0)); !errors.Is(err, ErrNotFound) {
			t.Errorf("UpdateWebhook(missing) error = %v, want ErrNotFound", err)
		}

		before := time.Now()
		if err := s.DisableWebhook("c", "410 Gone"); err != nil {
			t.Fatalf("DisableWebhook: %v", err)
		}
		c, _ := s.GetWebhook("c")
		if c.Enabled || c.DisabledReason != "410 Gone" || c.UpdatedAt.Before(before) {
			t.Errorf("after DisableWebhook got Enabled=%v DisabledReason=%q UpdatedAt=%v",
				c.Enabled, c.DisabledReason, c.UpdatedAt)
		}
		if err := s.DisableWebhook("nope", "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("DisableWebhook(missing) error = %v, want ErrNotFound", err)
		}

		if err := s.DeleteWebhook("a"); err != nil {
			t.Fatalf("DeleteWebhook: %v", err)
		}
		if _, err := s.GetWebhook("a"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetWebhook after delete error = %v, want ErrNotFound", err)
		}
		if err := s.DeleteWebhook("a"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second DeleteWebhook error = %v, want ErrNotFound", err)
		}
		if hooks, _ := s.ListWebhooks(""); !slices.Equal(webhookIDs(hooks), []string{"b", "c"}) {
			t.Errorf("after delete ListWebhooks = %v", webhookIDs(hooks))
		}
	})
}

// webhookEqual compares webhooks, times by instant.
func webhookEqual(a, b Webhook) bool {
	return a.ID == b.ID && a.Name == b.Name && a.URL == b.URL && a.Description == b.Description &&
		slices.Equal(a.Triggers, b.Triggers) && a.APIKey == b.APIKey && a.Enabled == b.Enabled &&
		a.Secret == b.Secret && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) &&
		a.DisabledReason == b.DisabledReason &&
		slices.EqualFunc(a.PreviousSecrets, b.PreviousSecrets, func(x, y PreviousSecret) bool {
			return x.Secret == y.Secret && x.ExpiresAt.Equal(y.ExpiresAt)
		})
}

// TestWebhookIndexFollowsWrites checks that Enqueue sees every webhook
// write at once.
func TestWebhookIndexFollowsWrites(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		steps := []struct {
			name string
			do   func() error
			want map[string][]string // API key -> webhooks that receive "create"
		}{
			{
				name: "create",
				do:   func() error { return s.CreateWebhook(testWebhook("wh1", "k1", t0, "create")) },
				want: map[string][]string{"k1": {"wh1"}, "k2": {}},
			},
			{
				name: "change api key",
				do:   func() error { return s.UpdateWebhook(testWebhook("wh1", "k2", t0, "create")) },
				want: map[string][]string{"k1": {}, "k2": {"wh1"}},
			},
			{
				name: "second webhook",
				do:   func() error { return s.CreateWebhook(testWebhook("wh2", "k2", t0.Add(-time.Hour), "create")) },
				want: map[string][]string{"k1": {}, "k2": {"wh2", "wh1"}},
			},
			{
				name: "disable",
				do:   func() error { return s.DisableWebhook("wh2", "410 Gone") },
				want: map[string][]string{"k1": {}, "k2": {"wh1"}},
			},
			{
				name: "unsubscribe",
				do:   func() error { return s.UpdateWebhook(testWebhook("wh1", "k2", t0, "delete")) },
				want: map[string][]string{"k1": {}, "k2": {}},
			},
			{
				name: "re-enable",
				do:   func() error { return s.UpdateWebhook(testWebhook("wh2", "k2", t0.Add(-time.Hour), "create")) },
				want: map[string][]string{"k1": {}, "k2": {"wh2"}},
			},
			{
				name: "delete",
				do:   func() error { return s.DeleteWebhook("wh2") },
				want: map[string][]string{"k1": {}, "k2": {}},
			},
		}
		for i, step := range steps {
			if err := step.do(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			for apiKey, want := range step.want {
				ds := mustEnqueue(t, s, testEvent(step.name+apiKey, apiKey, "create"))
				var got []string
				for _, d := range ds {
					got = append(got, d.WebhookID)
				}
				if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
					t.Errorf("step %d (%s): event of %s went to %v, want %v", i, step.name, apiKey, got, want)
				}
			}
		}
	})
}

func TestSubscribed(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("a", "k", t0, "create"))
	off := testWebhook("b", "k", t0, "delete")
	off.Enabled = false
	mustCreate(t, s, off)
	tests := []struct {
		apiKey, trigger string
		want            bool
	}{
		{"k", "create", true},
		{"k", "delete", false}, // its only webhook is disabled
		{"k", "edit", false},
		{"other", "create", false},
	}
	for _, tt := range tests {
		if got := s.Subscribed(tt.apiKey, tt.trigger); got != tt.want {
			t.Errorf("Subscribed(%q, %q) = %v, want %v", tt.apiKey, tt.trigger, got, tt.want)
		}
	}
}
