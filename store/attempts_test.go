package store

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestListAttemptsPaging(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
		mustCreate(t, s, testWebhook("wh1x", "k", t0, "create")) // shares the "at/wh1" prefix
		ds := mustEnqueue(t, s, testEvent("e1", "k", "create"))
		// Seven attempts on wh1, the last two at the same instant; one on wh1x.
		ats := []time.Duration{0, 1, 2, 3, 4, 5, 5}
		for i, at := range ats {
			a := &Attempt{Number: i + 1, At: t0.Add(at * time.Second), Status: 500 + i}
			mustComplete(t, s, ds[0].ID, a, Outcome{State: StatePending, NextAttemptAt: t0})
		}
		mustComplete(t, s, ds[1].ID, &Attempt{At: t0.Add(time.Hour)}, Outcome{State: StateSucceeded})

		want := []int{7, 6, 5, 4, 3, 2, 1} // Numbers, newest first
		tests := []struct {
			limit int
			pages [][]int
		}{
			{3, [][]int{{7, 6, 5}, {4, 3, 2}, {1}}},
			{7, [][]int{want}},
			{1, [][]int{{7}, {6}, {5}, {4}, {3}, {2}, {1}}},
			{0, [][]int{want}},
			{-1, [][]int{want}},
		}
		for _, tt := range tests {
			cursor := ""
			for p, page := range tt.pages {
				got, next, err := s.ListAttempts("wh1", cursor, tt.limit)
				if err != nil {
					t.Fatalf("limit %d page %d: %v", tt.limit, p, err)
				}
				var nums []int
				for _, a := range got {
					nums = append(nums, a.Number)
					if a.WebhookID != "wh1" {
						t.Errorf("listed an attempt of %s", a.WebhookID)
					}
				}
				if !slices.Equal(nums, page) {
					t.Errorf("limit %d page %d = %v, want %v", tt.limit, p, nums, page)
				}
				if last := p == len(tt.pages)-1; last != (next == "") {
					t.Errorf("limit %d page %d: next cursor %q, last page %v", tt.limit, p, next, last)
				}
				cursor = next
			}
		}

		if got, next, err := s.ListAttempts("none", "", 10); err != nil || got == nil || len(got) != 0 || next != "" {
			t.Errorf("ListAttempts(unknown webhook) = %v, %q, %v; want empty", got, next, err)
		}
		for _, bad := range []string{"zz", "00", strings.Repeat("0", 34)} {
			if _, _, err := s.ListAttempts("wh1", bad, 10); !errors.Is(err, ErrInvalidCursor) {
				t.Errorf("ListAttempts(cursor %q) error = %v, want ErrInvalidCursor", bad, err)
			}
		}
	})
}

func TestListAttemptsLimit(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
	d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
	for range maxAttemptsLimit + 1 {
		mustComplete(t, s, d.ID, &Attempt{Status: 500}, Outcome{State: StatePending})
	}
	tests := []struct {
		limit, want int
	}{
		{0, defaultAttemptsLimit},
		{10, 10},
		{maxAttemptsLimit + 100, maxAttemptsLimit},
	}
	for _, tt := range tests {
		got, next, err := s.ListAttempts("wh1", "", tt.limit)
		if err != nil || len(got) != tt.want || next == "" {
			t.Errorf("ListAttempts(limit %d) = %d attempts, next %q, %v; want %d and more",
				tt.limit, len(got), next, err, tt.want)
		}
	}
	if got, _ := s.GetDelivery(d.ID); got.Attempts != maxAttemptsLimit+1 {
		t.Errorf("Attempts = %d, want %d", got.Attempts, maxAttemptsLimit+1)
	}
}

func TestAttemptCaps(t *testing.T) {
	tests := []struct {
		name              string
		body, err         string
		wantBody, wantErr int // lengths
	}{
		{"short", "ok", "boom", 2, 4},
		{"exact", strings.Repeat("b", maxResponseBody), strings.Repeat("e", maxErrorLen), maxResponseBody, maxErrorLen},
		{"long", strings.Repeat("b", 5000), strings.Repeat("e", 2000), maxResponseBody, maxErrorLen},
		// "é" is two bytes: cutting at an odd length must not split one.
		{"utf8", "x" + strings.Repeat("é", 3000), "x" + strings.Repeat("é", 1000), maxResponseBody - 1, maxErrorLen - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Options{InMemory: true})
			mustCreate(t, s, testWebhook("wh1", "k", t0, "create"))
			d := mustEnqueue(t, s, testEvent("e1", "k", "create"))[0]
			mustComplete(t, s, d.ID, &Attempt{Status: 500, ResponseBody: tt.body, Error: tt.err}, Outcome{State: StateFailed})
			got, _, err := s.ListAttempts("wh1", "", 1)
			if err != nil || len(got) != 1 {
				t.Fatalf("ListAttempts = %v, %v", got, err)
			}
			a := got[0]
			if len(a.ResponseBody) != tt.wantBody || !strings.HasPrefix(tt.body, a.ResponseBody) || !utf8.ValidString(a.ResponseBody) {
				t.Errorf("stored body of %d bytes, want the first %d", len(a.ResponseBody), tt.wantBody)
			}
			if len(a.Error) != tt.wantErr || !strings.HasPrefix(tt.err, a.Error) || !utf8.ValidString(a.Error) {
				t.Errorf("stored error of %d bytes, want the first %d", len(a.Error), tt.wantErr)
			}
			if dl, _ := s.GetDelivery(d.ID); dl.LastError != a.Error {
				t.Errorf("LastError of %d bytes, want the capped error", len(dl.LastError))
			}
		})
	}
}
