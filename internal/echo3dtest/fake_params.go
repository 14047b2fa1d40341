package echo3dtest

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
)

// Limits on the parts of a request the fake keeps in memory. File parts
// are never kept.
const (
	maxFormBytes  = 10 << 20
	maxFieldBytes = 1 << 20
)

// call is one parsed API request.
type call struct {
	// params merges the query string, then the urlencoded body or the
	// multipart text fields.
	params url.Values
	// files lists the multipart file parts, counted but not kept.
	files []receivedFile
	// key is the collection key.
	key string
}

// receivedFile describes one multipart file part that was streamed through.
type receivedFile struct {
	field       string
	filename    string
	contentType string
	size        int64
}

// readCall parses a request's parameters from its query string and body.
// Multipart file parts are streamed to io.Discard and only counted.
func readCall(r *http.Request) (*call, error) {
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("bad query string: %w", err)
	}
	c := &call{params: params}
	if err := c.readBody(r); err != nil {
		return nil, err
	}
	c.key = c.params.Get("key")
	return c, nil
}

// readBody adds the parameters of an urlencoded or multipart body.
func (c *call) readBody(r *http.Request) error {
	if r.Body == nil {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mediaType, ctParams, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("bad Content-Type: %w", err)
	}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		return c.readURLEncoded(r.Body)
	case "multipart/form-data":
		boundary := ctParams["boundary"]
		if boundary == "" {
			return errors.New("multipart body without boundary")
		}
		return c.readMultipart(multipart.NewReader(r.Body, boundary))
	default:
		return nil
	}
}

// readURLEncoded adds the fields of an urlencoded body.
func (c *call) readURLEncoded(body io.Reader) error {
	raw, err := io.ReadAll(io.LimitReader(body, maxFormBytes+1))
	if err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if len(raw) > maxFormBytes {
		return errors.New("urlencoded body too large")
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil {
		return fmt.Errorf("bad urlencoded body: %w", err)
	}
	for k, vs := range form {
		c.params[k] = append(c.params[k], vs...)
	}
	return nil
}

// readMultipart adds the text fields of a multipart body and counts its
// file parts, streaming them to io.Discard.
func (c *call) readMultipart(mr *multipart.Reader) error {
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bad multipart body: %w", err)
		}
		if err := c.readPart(part); err != nil {
			return err
		}
	}
}

// readPart handles one multipart part.
func (c *call) readPart(part *multipart.Part) error {
	defer part.Close()
	name := part.FormName()
	if part.FileName() != "" {
		n, err := io.Copy(io.Discard, part)
		if err != nil {
			return fmt.Errorf("reading file part %q: %w", name, err)
		}
		c.files = append(c.files, receivedFile{
			field:       name,
			filename:    part.FileName(),
			contentType: part.Header.Get("Content-Type"),
			size:        n,
		})
		return nil
	}
	value, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
	if err != nil {
		return fmt.Errorf("reading field %q: %w", name, err)
	}
	if len(value) > maxFieldBytes {
		return fmt.Errorf("field %q too large", name)
	}
	if name != "" {
		c.params.Add(name, string(value))
	}
	return nil
}

// idList returns the ids of a comma-separated list parameter for every
// name given, in order, without blanks.
func (c *call) idList(names ...string) []string {
	var ids []string
	for _, name := range names {
		for _, v := range c.params[name] {
			for _, id := range strings.Split(v, ",") {
				if id = strings.TrimSpace(id); id != "" {
					ids = append(ids, id)
				}
			}
		}
	}
	return ids
}

// isTrue reports whether parameter name is the string "true" (any case).
func (c *call) isTrue(name string) bool {
	return strings.EqualFold(c.params.Get(name), "true")
}
