package events

import (
	"io"
	"mime/multipart"
	"strings"
)

// formFields is what a multipart parse kept.
type formFields struct {
	// fields are the text fields kept, in body order.
	fields []param
	// ok is true only when the body parsed to its closing boundary and no
	// text field was dropped. The zero value means "incomplete".
	ok bool
}

// maxFastBoundary is the longest boundary parsed by partScanner; longer
// ones (and boundaries holding CR or LF, which no HTTP header can carry)
// go through mime/multipart, whose 4 KiB buffer behaves differently once a
// delimiter line comes near its size.
const maxFastBoundary = 1000

// parseMultipart reads a multipart/form-data stream from r to its closing
// boundary, keeping the text fields allowed by lim (which must have its
// defaults applied). File parts (parts with a file name) and parts without
// a form name are skipped as they stream by, so memory does not depend on
// their size. A parse or read error stops it and leaves ok false; the
// fields kept until then are returned.
//
// It finds exactly what parseMultipartStd (mime/multipart) finds; see
// partScanner for how it does so faster.
func parseMultipart(r io.Reader, boundary string, lim Limits) formFields {
	if len(boundary) > maxFastBoundary || strings.ContainsAny(boundary, "\r\n") {
		return parseMultipartStd(r, boundary, lim)
	}
	mr := newPartScanner(r, boundary)
	return collectFields(func() (formPart, error) {
		p, err := mr.nextPart()
		if err != nil {
			return nil, err // not a nil *scanPart in a non-nil interface
		}
		return p, nil
	}, lim)
}

// parseMultipartStd is parseMultipart on mime/multipart: the reference the
// fast parser is tested against, and the parser of unusual boundaries.
func parseMultipartStd(r io.Reader, boundary string, lim Limits) formFields {
	mr := multipart.NewReader(r, boundary)
	return collectFields(func() (formPart, error) {
		p, err := mr.NextPart()
		if err != nil {
			return nil, err
		}
		return stdPart{p}, nil
	}, lim)
}

// formPart is one part of a multipart body, as collectFields reads it.
type formPart interface {
	io.Reader
	// formName is the name of a form-data part, else "".
	formName() string
	// hasFileName reports whether the part names a file.
	hasFileName() bool
	// discard reads the rest of the part, as io.Copy(io.Discard, part)
	// does, and returns its error.
	discard() error
}

// stdPart is a mime/multipart part as a formPart.
type stdPart struct{ *multipart.Part }

func (p stdPart) formName() string  { return p.FormName() }
func (p stdPart) hasFileName() bool { return p.FileName() != "" }
func (p stdPart) discard() error {
	_, err := io.Copy(io.Discard, p.Part)
	return err
}

// collectFields reads the parts next returns until io.EOF and keeps their
// text fields within lim (see parseMultipart).
func collectFields(next func() (formPart, error), lim Limits) formFields {
	res := formFields{ok: true}
	var kept int64
	for {
		part, err := next()
		if err == io.EOF {
			return res
		}
		if err != nil {
			res.ok = false
			return res
		}
		name := part.formName()
		if name == "" || part.hasFileName() {
			if err := part.discard(); err != nil {
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
