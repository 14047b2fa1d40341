package echo3dtest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// BodyBytes builds the request body the fixture describes, and the
// Content-Type that goes with it. An urlencoded body is BodyRaw when
// recorded, else Body encoded with sorted keys. A multipart body is a real
// multipart/form-data body: the text fields in sorted key order, then the
// files in order with their decoded content, using the boundary of the
// recorded Content-Type header when there is one. A request without a body
// gives nil and "".
func (f Fixture) BodyBytes() (body []byte, contentType string, err error) {
	return f.Request.BodyBytes()
}

// BodyBytes builds the request body; see Fixture.BodyBytes.
func (r FixtureRequest) BodyBytes() (body []byte, contentType string, err error) {
	switch r.BodyKind {
	case BodyNone, "":
		return nil, "", nil
	case BodyURLEncoded:
		return r.urlencodedBody()
	case BodyMultipart:
		return r.multipartBody()
	default:
		return nil, "", fmt.Errorf("unknown body kind %q", r.BodyKind)
	}
}

// urlencodedBody encodes an urlencoded fixture body.
func (r FixtureRequest) urlencodedBody() ([]byte, string, error) {
	contentType := r.Header("Content-Type")
	if contentType == "" {
		contentType = "application/x-www-form-urlencoded"
	}
	if r.BodyRaw != "" {
		return []byte(r.BodyRaw), contentType, nil
	}
	form := url.Values{}
	appendSorted(form, r.Body)
	return []byte(form.Encode()), contentType, nil
}

// quoteEscaper escapes a Content-Disposition parameter value the way
// mime/multipart does.
var quoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, "\\\"")

// multipartBody encodes a multipart fixture body.
func (r FixtureRequest) multipartBody() ([]byte, string, error) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if boundary := recordedBoundary(r.Header("Content-Type")); boundary != "" {
		if err := w.SetBoundary(boundary); err != nil {
			return nil, "", fmt.Errorf("fixture boundary %q: %w", boundary, err)
		}
	}
	for _, k := range sortedKeys(r.Fields) {
		if err := w.WriteField(k, r.Fields[k]); err != nil {
			return nil, "", fmt.Errorf("writing field %q: %w", k, err)
		}
	}
	for i, file := range r.Files {
		content, err := base64.StdEncoding.DecodeString(file.ContentBase64)
		if err != nil {
			return nil, "", fmt.Errorf("file %d (%s): decoding content: %w", i, file.Filename, err)
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="%s"; filename="%s"`,
			quoteEscaper.Replace(file.Field), quoteEscaper.Replace(file.Filename)))
		ct := file.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		h.Set("Content-Type", ct)
		part, err := w.CreatePart(h)
		if err != nil {
			return nil, "", fmt.Errorf("file %d (%s): %w", i, file.Filename, err)
		}
		if _, err := part.Write(content); err != nil {
			return nil, "", fmt.Errorf("file %d (%s): %w", i, file.Filename, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, "", fmt.Errorf("closing multipart body: %w", err)
	}
	return buf.Bytes(), w.FormDataContentType(), nil
}

// recordedBoundary returns the boundary parameter of a multipart
// Content-Type, or "".
func recordedBoundary(contentType string) string {
	if contentType == "" {
		return ""
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.HasPrefix(mediaType, "multipart/") {
		return ""
	}
	return params["boundary"]
}

// NewRequest builds the fixture's request against baseURL (for example an
// httptest server's URL): its method, baseURL's path joined with the
// fixture's path, the query encoded in sorted key order, the recorded
// headers except Host and Content-Length, and the body from BodyBytes. A
// recorded Content-Type is kept; otherwise the one from BodyBytes is set.
func (f Fixture) NewRequest(baseURL string) (*http.Request, error) {
	return f.Request.NewRequest(baseURL)
}

// NewRequest builds the request against baseURL; see Fixture.NewRequest.
func (r FixtureRequest) NewRequest(baseURL string) (*http.Request, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing base URL: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + r.Path
	u.RawPath = ""
	query := url.Values{}
	appendSorted(query, r.Query)
	u.RawQuery = query.Encode()

	body, contentType, err := r.BodyBytes()
	if err != nil {
		return nil, err
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if body == nil {
		req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
	}
	for _, k := range sortedKeys(r.Headers) {
		switch http.CanonicalHeaderKey(k) {
		case "Host", "Content-Length":
			continue
		}
		req.Header.Add(k, r.Headers[k])
	}
	if contentType != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// ResponseBody returns the recorded response body as sent on the wire: the
// bytes of a JSON object (or any non-string JSON value) as recorded, the
// text of a JSON string, and nil for null or no body.
func (f Fixture) ResponseBody() []byte {
	return f.Response.BodyBytes()
}

// BodyBytes returns the response body as sent on the wire; see
// Fixture.ResponseBody.
func (r FixtureResponse) BodyBytes() []byte {
	raw := bytes.TrimSpace(r.Body)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if raw[0] == '"' {
		var text string
		if err := json.Unmarshal(raw, &text); err == nil {
			return []byte(text)
		}
	}
	return []byte(raw)
}
