package store

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func recordSamples() []any {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	return []any{
		&Event{},
		&Event{ID: "evt_1", Trigger: "Upload", APIKey: "k", Payload: []byte(`{"a":"\n\u0001"}`), CreatedAt: at},
		&Event{ID: strings.Repeat("x", 300), Payload: make([]byte, 70000), CreatedAt: time.Unix(0, 0).UTC()},
		&Delivery{},
		&Delivery{
			ID: "msg_1", EventID: "evt_1", WebhookID: "wh_1", Seq: 1 << 40, State: StatePending,
			Attempts: 3, NextAttemptAt: at.Add(time.Hour), LastStatus: 503, LastError: "timeout\nafter 10s",
			CreatedAt: at, UpdatedAt: at.Add(time.Minute),
		},
		&Delivery{ID: "msg_2", Attempts: -1, LastStatus: -1, CreatedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
		&Attempt{},
		&Attempt{
			DeliveryID: "msg_1", EventID: "evt_1", WebhookID: "wh_1", Number: 7, At: at,
			Duration: 1500 * time.Millisecond, Status: 503, Error: "HTTP 503", ResponseBody: "busy\n\u00e9\x00",
		},
		&Attempt{Number: -1, Duration: -time.Nanosecond, Status: -1, At: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
	}
}

// TestRecordRoundTrip checks that events, deliveries and attempts come back
// from the binary form exactly as they went in (times in UTC), zero times
// included.
func TestRecordRoundTrip(t *testing.T) {
	for _, v := range recordSamples() {
		enc, err := encodeRecord(v)
		if err != nil {
			t.Fatalf("encodeRecord(%T): %v", v, err)
		}
		if enc[0] != recordV1 {
			t.Fatalf("%T encoded as %q, want the binary form", v, enc[:1])
		}
		got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
		if err := decodeRecord(enc, got); err != nil {
			t.Fatalf("decodeRecord(%T): %v", v, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("round trip of %T:\n got %+v\nwant %+v", v, got, v)
		}
	}
}

// TestRecordReadsJSON checks that records written as JSON by earlier
// versions still decode.
func TestRecordReadsJSON(t *testing.T) {
	for _, v := range recordSamples() {
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
		if err := decodeRecord(enc, got); err != nil {
			t.Fatalf("decodeRecord(JSON %T): %v", v, err)
		}
		want := reflect.New(reflect.TypeOf(v).Elem()).Interface()
		if err := json.Unmarshal(enc, want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("JSON %T:\n got %+v\nwant %+v", v, got, want)
		}
	}
}

// TestRecordRejectsDamage checks that every truncation of a record, and a
// record with bytes after its fields, gives an error rather than a partial
// value.
func TestRecordRejectsDamage(t *testing.T) {
	for _, v := range recordSamples() {
		enc, _ := encodeRecord(v)
		for n := 1; n < len(enc); n++ {
			got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := decodeRecord(enc[:n], got); err == nil {
				t.Fatalf("%T truncated to %d of %d bytes decoded without error", v, n, len(enc))
			}
		}
		got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
		if err := decodeRecord(append(enc, 0), got); err == nil {
			t.Errorf("%T with a trailing byte decoded without error", v)
		}
	}
	if err := decodeRecord([]byte{recordV1}, new(Webhook)); err == nil {
		t.Error("a binary record decoded into a Webhook")
	}
}

// FuzzRecordDecode checks that no input makes decodeRecord or
// decodeEventValue panic, that whatever decodes re-encodes to a value that
// decodes the same, and that withPending changes an event value's count
// and nothing else.
func FuzzRecordDecode(f *testing.F) {
	for _, v := range recordSamples() {
		enc, _ := encodeRecord(v)
		f.Add(enc)
		if ev, ok := v.(*Event); ok {
			f.Add(encodeEventValue(ev, 0))
			f.Add(encodeEventValue(ev, 1<<40))
		}
	}
	f.Add([]byte{recordV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{eventRecordV2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || (b[0] != recordV1 && b[0] != eventRecordV2) {
			return
		}
		if ev, pending, err := decodeEventValue(b); err == nil {
			checkEventValue(t, b, &ev, pending)
		}
		if b[0] != recordV1 {
			return
		}
		for _, v := range []record{new(Event), new(Delivery)} {
			if decodeRecord(b, v) != nil {
				continue
			}
			enc, err := encodeRecord(v)
			if err != nil {
				t.Fatalf("re-encoding %T: %v", v, err)
			}
			again := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := decodeRecord(enc, again); err != nil {
				t.Fatalf("re-decoding %T: %v", v, err)
			}
			if !reflect.DeepEqual(again, v) {
				t.Fatalf("%T changed on a second round trip:\n%+v\n%+v", v, again, v)
			}
		}
	})
}

// checkEventValue checks that the event and count decoded from val come
// back the same from their encoding, and that withPending changes the
// count alone.
func checkEventValue(t *testing.T, val []byte, ev *Event, pending uint64) {
	t.Helper()
	again, n, err := decodeEventValue(encodeEventValue(ev, pending))
	if err != nil || n != pending || !reflect.DeepEqual(&again, ev) {
		t.Fatalf("event value changed on a second round trip: %+v, %d, %v; want %+v, %d", again, n, err, ev, pending)
	}
	re, err := withPending(val, pending+1)
	if err != nil {
		t.Fatalf("withPending of a value that decodes: %v", err)
	}
	again, n, err = decodeEventValue(re)
	if err != nil || n != pending+1 || !reflect.DeepEqual(&again, ev) {
		t.Fatalf("withPending(%d) decoded to %+v, %d, %v; want %+v", pending+1, again, n, err, ev)
	}
}
