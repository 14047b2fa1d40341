package store

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// TestEventCursor checks that the cursor returns what a point read returns,
// whatever the order of the IDs asked for.
func TestEventCursor(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustCreate(t, s, testWebhook("a", "k", t0, "create"))
		// Twenty events in key order; every third one is then deleted.
		var ids []string
		for i := range 20 {
			ev := testEvent(eventIDAt(t0.Add(time.Duration(i)*time.Millisecond)), "k", "create")
			mustEnqueue(t, s, ev)
			ids = append(ids, ev.ID)
		}
		err := s.db.Update(func(txn *badger.Txn) error {
			for i := 0; i < len(ids); i += 3 {
				if err := txn.Delete(eventKey(ids[i])); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		missing := eventIDAt(t0.Add(time.Hour)) // after every event
		before := eventIDAt(t0.Add(-time.Hour)) // before every event
		tests := []struct {
			name string
			ask  []string
		}{
			{"in order", ids},
			{"every other", []string{ids[1], ids[3], ids[5], ids[7], ids[9]}},
			{"far apart", []string{ids[1], ids[17], ids[19]}},
			{"backwards", []string{ids[19], ids[10], ids[2], ids[1]}},
			{"the same twice", []string{ids[4], ids[4], ids[5]}},
			{"unknown ones between", []string{before, ids[1], missing, ids[2], before, ids[4]}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cur := &eventCursor{db: s.db}
				defer cur.close()
				err := s.db.View(func(txn *badger.Txn) error {
					for _, id := range tt.ask {
						want, wantErr := getRaw(txn, eventKey(id), "event "+id)
						got, err := cur.get(id)
						if !bytes.Equal(got, want) || errors.Is(err, ErrNotFound) != errors.Is(wantErr, ErrNotFound) {
							return fmt.Errorf("get(%s) = %q, %v; a point read gives %q, %v", id, got, err, want, wantErr)
						}
					}
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
	})
}
