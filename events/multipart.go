package events

import (
	"io"
	"mime/multipart"
)

// formFields is what a multipart parse kept.
type formFields struct {
	// fields are the text fields kept, in body order.
	fields []param
	// ok is true only when the body parsed to its closing boundary and no
	// text field was dropped. The zero value means "incomplete".
	ok bool
}

// parseMultipart reads a multipart/form-data stream from r to its closing
// boundary, keeping the text fields allowed by lim (which must have its
// defaults applied). File parts (parts with a file name) and parts without
// a form name are skipped as they stream by, so memory does not depend on
// their size. A parse or read error stops it and leaves ok false; the
// fields kept until then are returned.
func parseMultipart(r io.Reader, boundary string, lim Limits) formFields {
	mr := multipart.NewReader(r, boundary)
	res := formFields{ok: true}
	var kept int64
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return res
		}
		if err != nil {
			res.ok = false
			return res
		}
		name := part.FormName()
		if name == "" || part.FileName() != "" {
			if _, err := io.Copy(io.Discard, part); err != nil {
				res.ok = false
				return res
			}
			continue
		}
		value, fits, err := readField(part, lim.MaxFieldBytes)
		if err != nil {
			res.ok = false
			return res
		}
		if !fits || len(res.fields) >= lim.MaxFields || kept+int64(len(value)) > lim.MaxFormBytes {
			res.ok = false
			continue
		}
		kept += int64(len(value))
		res.fields = append(res.fields, param{name: name, value: value})
	}
}

// readField reads one text part. If it is longer than max bytes, the rest
// is discarded and fits is false.
func readField(part io.Reader, max int64) (value string, fits bool, err error) {
	b, err := io.ReadAll(io.LimitReader(part, max+1))
	if err != nil {
		return "", false, err
	}
	if int64(len(b)) <= max {
		return string(b), true, nil
	}
	if _, err := io.Copy(io.Discard, part); err != nil {
		return "", false, err
	}
	return "", false, nil
}
