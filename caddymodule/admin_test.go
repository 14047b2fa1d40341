package caddymodule_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAdminAPI drives every admin route through a real Caddy admin
// endpoint: validation errors name the field, unknown ids are 404, secrets
// appear only where SPEC §5 says.
func TestAdminAPI(t *testing.T) {
	rc := newReceiver(t)
	upstream := httptest.NewServer(http.NotFoundHandler())
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, siteConfig(`
		storage memory
		allow_private_targets
		trusted_ca_file `+writeCA(t, rc), upstream.Listener.Addr().String()))

	good := map[string]any{"name": "n", "url": rc.url("/h"), "apiKey": "quiet-river-1234", "triggers": []string{"Upload"}}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range good {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	bad := []struct {
		name  string
		body  any
		field string
	}{
		{"missing name", with("name", nil), "name"},
		{"blank name", with("name", "  "), "name"},
		{"missing url", with("url", nil), "url"},
		{"http url", with("url", "http://example.com/h"), "url"},
		{"relative url", with("url", "/h"), "url"},
		{"missing apiKey", with("apiKey", nil), "apiKey"},
		{"missing triggers", with("triggers", nil), "triggers"},
		{"empty triggers", with("triggers", []string{}), "triggers"},
		{"unknown trigger", with("triggers", []string{"Uploaded"}), "triggers"},
		{"triggers not array", with("triggers", "Upload"), "triggers"},
		{"name not string", with("name", 5), "name"},
		{"unknown field", with("color", "red"), "color"},
		{"not json", "{", "body"},
		{"empty body", "", "body"},
		{"long name", with("name", strings.Repeat("n", 201)), "name"},
	}
	for _, tc := range bad {
		t.Run("create/"+tc.name, func(t *testing.T) {
			status, body := adminCall(t, http.MethodPost, "/echo3d/webhooks", tc.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", status, body)
			}
			var e struct{ Error string }
			if err := json.Unmarshal(body, &e); err != nil || !strings.HasPrefix(e.Error, tc.field+":") {
				t.Errorf("error %q does not start with the field %q", body, tc.field)
			}
		})
	}

	// Loopback targets are refused unless allow_private_targets; this config
	// allows them, so a public-looking but private name is accepted here and
	// the refusal itself is covered by the sink tests and TestPrivateTargetsRefused.
	created := createWebhook(t, "first", rc.url("/h"), "quiet-river-1234", "Upload", "Upload", "Delete")
	if strings.Join(created.Triggers, ",") != "Upload,Delete" || !created.Enabled {
		t.Errorf("created %+v: want de-duplicated triggers and enabled", created)
	}
	second := createWebhook(t, "second", rc.url("/h2"), "another-key", "Edit")

	status, body := adminCall(t, http.MethodGet, "/echo3d/webhooks", nil)
	var list []webhook
	if status != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list) != 2 {
		t.Fatalf("list: %d %s", status, body)
	}
	for _, w := range list {
		if w.Secret != "" {
			t.Errorf("list shows the secret of %s", w.ID)
		}
	}
	status, body = adminCall(t, http.MethodGet, "/echo3d/webhooks?apiKey=another-key", nil)
	if status != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list) != 1 || list[0].ID != second.ID {
		t.Fatalf("list by apiKey: %d %s", status, body)
	}

	var got webhook
	status, body = adminCall(t, http.MethodGet, "/echo3d/webhooks/"+created.ID, nil)
	if status != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Secret != created.Secret {
		t.Fatalf("get: %d %s", status, body)
	}

	status, body = adminCall(t, http.MethodPut, "/echo3d/webhooks/"+created.ID, map[string]any{
		"name": "renamed", "url": rc.url("/h3"), "triggers": []string{"Edit"}, "enabled": false, "description": "d",
	})
	if status != http.StatusOK || json.Unmarshal(body, &got) != nil {
		t.Fatalf("put: %d %s", status, body)
	}
	if got.Name != "renamed" || got.Enabled || got.Description != "d" || got.APIKey != "quiet-river-1234" || strings.Join(got.Triggers, ",") != "Edit" {
		t.Errorf("after put: %+v", got)
	}
	if status, body = adminCall(t, http.MethodPut, "/echo3d/webhooks/"+created.ID, map[string]any{
		"name": "x", "url": rc.url("/h3"), "triggers": []string{"Edit"}, "apiKey": "moved",
	}); status != http.StatusBadRequest || !strings.Contains(string(body), "apiKey:") {
		t.Errorf("changing apiKey: %d %s", status, body)
	}

	status, body = adminCall(t, http.MethodPost, "/echo3d/webhooks/"+created.ID+"/rotate-secret", nil)
	if status != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Secret == created.Secret || !strings.HasPrefix(got.Secret, "whsec_") {
		t.Fatalf("rotate: %d %s", status, body)
	}

	status, body = adminCall(t, http.MethodGet, "/echo3d/webhooks/"+created.ID+"/deliveries", nil)
	if status != http.StatusOK || !strings.Contains(string(body), `"attempts":[]`) {
		t.Errorf("deliveries of a fresh webhook: %d %s", status, body)
	}
	if status, _ = adminCall(t, http.MethodGet, "/echo3d/webhooks/"+created.ID+"/deliveries?limit=0", nil); status != http.StatusBadRequest {
		t.Errorf("limit=0: %d, want 400", status)
	}

	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/echo3d/webhooks/wh_missing"},
		{http.MethodPut, "/echo3d/webhooks/wh_missing"},
		{http.MethodDelete, "/echo3d/webhooks/wh_missing"},
		{http.MethodGet, "/echo3d/webhooks/wh_missing/deliveries"},
		{http.MethodPost, "/echo3d/webhooks/wh_missing/test"},
		{http.MethodPost, "/echo3d/webhooks/wh_missing/rotate-secret"},
		{http.MethodPost, "/echo3d/deliveries/msg_missing/redeliver"},
	} {
		var body any
		if tc.method == http.MethodPut {
			body = good
		}
		if status, out := adminCall(t, tc.method, tc.path, body); status != http.StatusNotFound {
			t.Errorf("%s %s: %d %s, want 404", tc.method, tc.path, status, out)
		}
	}

	if status, body = adminCall(t, http.MethodDelete, "/echo3d/webhooks/"+second.ID, nil); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, body)
	}
	if status, _ = adminCall(t, http.MethodGet, "/echo3d/webhooks/"+second.ID, nil); status != http.StatusNotFound {
		t.Errorf("get after delete: %d, want 404", status)
	}
}

// TestPrivateTargetsRefused checks that without allow_private_targets a
// loopback webhook URL is refused at creation with a 400 naming the url.
func TestPrivateTargetsRefused(t *testing.T) {
	upstream := httptest.NewServer(http.NotFoundHandler())
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, siteConfig("\t\tstorage memory", upstream.Listener.Addr().String()))
	for _, u := range []string{"https://127.0.0.1/h", "https://localhost:8443/h", "https://[::1]/h", "https://169.254.169.254/latest", "https://10.1.2.3/h"} {
		status, body := adminCall(t, http.MethodPost, "/echo3d/webhooks", map[string]any{
			"name": "n", "url": u, "apiKey": "k", "triggers": []string{"Upload"},
		})
		if status != http.StatusBadRequest || !strings.Contains(string(body), `"url:`) {
			t.Errorf("%s: %d %s, want 400 naming url", u, status, body)
		}
	}
}
