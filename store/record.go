package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Events, deliveries and attempts, the records written and read for every
// delivery, are stored in a compact binary form: a version byte, then their fields
// in a fixed order, strings and byte slices as a uvarint length and the
// bytes, integers as varints, times as Unix seconds (varint) and
// nanoseconds (uvarint), read back in UTC. Encoding and decoding them as
// JSON, with the payload in base64, was about 9 % of the CPU of a drain;
// encoding attempts as JSON was 3 % of Caddy's at 2,000 deliveries/s.
// Every other record (webhooks, health, watches) stays JSON.
//
// Values written by earlier versions are JSON, which starts with '{', so
// decodeRecord tells the two apart by the first byte and reads both. An
// event is stored with its pending count in front of its record, under a
// version byte of its own (eventvalue.go).

// recordV1 is the first byte of a value in the binary record format.
const recordV1 = 0x01

// record is a type stored in the binary record format.
type record interface {
	// appendRecord appends the fields to b.
	appendRecord(b []byte) []byte
	// decodeRecord reads the fields from r.
	decodeRecord(r *recordReader)
}

// encodeRecord encodes v: a record in the binary format, anything else as
// JSON.
func encodeRecord(v any) ([]byte, error) {
	if r, ok := v.(record); ok {
		return r.appendRecord(append(make([]byte, 0, 256), recordV1)), nil
	}
	return json.Marshal(v)
}

// decodeRecord decodes val, in the binary format or JSON, into v.
func decodeRecord(val []byte, v any) error {
	if len(val) == 0 || val[0] != recordV1 {
		return json.Unmarshal(val, v)
	}
	r, ok := v.(record)
	if !ok {
		return fmt.Errorf("binary record where %T was expected", v)
	}
	rd := &recordReader{b: val[1:]}
	r.decodeRecord(rd)
	return rd.err
}

var errShortRecord = errors.New("record truncated")

// recordReader reads the fields of a binary record; after the first error
// every read returns a zero value and err keeps that error.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *recordReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errShortRecord)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errShortRecord)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns a copy of the next length-prefixed bytes, nil if empty.
func (r *recordReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(errShortRecord)
		return nil
	}
	if n == 0 {
		return nil
	}
	v := make([]byte, n)
	copy(v, r.b)
	r.b = r.b[n:]
	return v
}

func (r *recordReader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail(errShortRecord)
		return ""
	}
	v := string(r.b[:n])
	r.b = r.b[n:]
	return v
}

func (r *recordReader) int() int { return int(r.varint()) }

func (r *recordReader) time() time.Time {
	sec := r.varint()
	nsec := r.uvarint()
	if r.err != nil {
		return time.Time{}
	}
	if nsec >= uint64(time.Second) {
		r.fail(fmt.Errorf("record time has %d nanoseconds", nsec))
		return time.Time{}
	}
	// The zero Time is Unix second -62135596800, and comes back as
	// the zero Time.
	return time.Unix(sec, int64(nsec)).UTC()
}

// end reports trailing bytes, which mean the record is not what its
// reader expects.
func (r *recordReader) end() {
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Errorf("record has %d trailing bytes", len(r.b)))
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func (ev *Event) appendRecord(b []byte) []byte {
	b = appendString(b, ev.ID)
	b = appendString(b, ev.Trigger)
	b = appendString(b, ev.APIKey)
	b = appendBytes(b, ev.Payload)
	return appendTime(b, ev.CreatedAt)
}

func (ev *Event) decodeRecord(r *recordReader) {
	ev.ID = r.string()
	ev.Trigger = r.string()
	ev.APIKey = r.string()
	ev.Payload = r.bytes()
	ev.CreatedAt = r.time()
	r.end()
}

func (d *Delivery) appendRecord(b []byte) []byte {
	b = appendString(b, d.ID)
	b = appendString(b, d.EventID)
	b = appendString(b, d.WebhookID)
	b = binary.AppendUvarint(b, d.Seq)
	b = appendString(b, d.State)
	b = binary.AppendVarint(b, int64(d.Attempts))
	b = appendTime(b, d.NextAttemptAt)
	b = binary.AppendVarint(b, int64(d.LastStatus))
	b = appendString(b, d.LastError)
	b = appendTime(b, d.CreatedAt)
	return appendTime(b, d.UpdatedAt)
}

func (d *Delivery) decodeRecord(r *recordReader) {
	d.ID = r.string()
	d.EventID = r.string()
	d.WebhookID = r.string()
	d.Seq = r.uvarint()
	d.State = r.string()
	d.Attempts = r.int()
	d.NextAttemptAt = r.time()
	d.LastStatus = r.int()
	d.LastError = r.string()
	d.CreatedAt = r.time()
	d.UpdatedAt = r.time()
	r.end()
}

func (a *Attempt) appendRecord(b []byte) []byte {
	b = appendString(b, a.DeliveryID)
	b = appendString(b, a.EventID)
	b = appendString(b, a.WebhookID)
	b = binary.AppendVarint(b, int64(a.Number))
	b = appendTime(b, a.At)
	b = binary.AppendVarint(b, int64(a.Duration))
	b = binary.AppendVarint(b, int64(a.Status))
	b = appendString(b, a.Error)
	return appendString(b, a.ResponseBody)
}

func (a *Attempt) decodeRecord(r *recordReader) {
	a.DeliveryID = r.string()
	a.EventID = r.string()
	a.WebhookID = r.string()
	a.Number = r.int()
	a.At = r.time()
	a.Duration = time.Duration(r.varint())
	a.Status = r.int()
	a.Error = r.string()
	a.ResponseBody = r.string()
	r.end()
}

// Interface guards.
var (
	_ record = (*Event)(nil)
	_ record = (*Delivery)(nil)
	_ record = (*Attempt)(nil)
)
