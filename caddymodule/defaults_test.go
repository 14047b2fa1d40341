package caddymodule_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDirectiveAloneUsesDefaults loads a config with the directive and no
// global block: the app starts with defaults, keeps its store under Caddy's
// data directory, and derives and attempts deliveries. The webhook's host
// (.invalid never resolves) is accepted at creation, and the attempt's DNS
// failure is recorded in the delivery log. The delete names its ids with a
// parameter only the directive's delete_params override knows, so the
// event also proves the override reaches the rule table.
func TestDirectiveAloneUsesDefaults(t *testing.T) {
	data := t.TempDir()
	t.Setenv("XDG_DATA_HOME", data)
	upstream := okUpstream()
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, fmt.Sprintf(`{
	%s
}
%s {
	echo3d_webhooks {
		delete_params assetIds
	}
	reverse_proxy %s
}
`, globalHead(), proxyURL, upstream.Listener.Addr()))

	hook := createWebhook(t, "defaults", "https://receiver.invalid/hook", "defaults-key", "Delete")
	if _, err := os.Stat(filepath.Join(data, "caddy", "echo3d_webhooks")); err != nil {
		t.Fatalf("default store directory: %v", err)
	}

	// Only the override names the ids: an event proves it is wired in.
	resp, err := http.Get(proxyURL + "/delete?key=defaults-key&assetIds=a1,a2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	var log struct {
		Attempts []struct {
			EventID string `json:"eventId"`
			Error   string `json:"error"`
			Attempt int    `json:"attempt"`
		} `json:"attempts"`
	}
	deadline := time.Now().Add(waitWithin)
	for len(log.Attempts) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no delivery attempt recorded")
		}
		status, body := adminCall(t, http.MethodGet, "/echo3d/webhooks/"+hook.ID+"/deliveries", nil)
		if status != http.StatusOK || json.Unmarshal(body, &log) != nil {
			t.Fatalf("deliveries: %d %s", status, body)
		}
		if len(log.Attempts) == 0 {
			time.Sleep(20 * time.Millisecond) // polling the admin API with a deadline
		}
	}
	if len(log.Attempts) != 1 || log.Attempts[0].Attempt != 1 || log.Attempts[0].Error == "" {
		t.Errorf("attempt log %+v: want one failed first attempt with its error", log.Attempts)
	}
}
