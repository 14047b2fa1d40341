package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/caddymodule"
)

// openAPIFile is the admin API's OpenAPI document, relative to this package.
const openAPIFile = "../docs/openapi.json"

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// apiOperation is one documented method and path.
type apiOperation struct {
	method, path string
	op           map[string]any
}

// loadOpenAPI reads the document and lists its operations.
func loadOpenAPI(t *testing.T) (map[string]any, []apiOperation) {
	t.Helper()
	raw, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("%s: openapi %q, want 3.1.x", openAPIFile, v)
	}
	paths, _ := doc["paths"].(map[string]any)
	var ops []apiOperation
	for path, item := range paths {
		for _, m := range openAPIMethods {
			if op, ok := item.(map[string]any)[m].(map[string]any); ok {
				ops = append(ops, apiOperation{strings.ToUpper(m), path, op})
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].path+ops[i].method < ops[j].path+ops[j].method })
	return doc, ops
}

// TestOpenAPIDocumentsEveryRoute holds docs/openapi.json and the admin
// handler's route table to each other, and checks that every reference in
// the document resolves.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc, ops := loadOpenAPI(t)
	documented := map[string]bool{}
	for _, o := range ops {
		documented[o.method+" "+o.path] = true
	}
	served := map[string]bool{}
	for _, rt := range caddymodule.AdminRoutes() {
		key := rt[0] + " " + rt[1]
		served[key] = true
		if !documented[key] {
			t.Errorf("the admin API serves %s but %s does not document it", key, openAPIFile)
		}
	}
	for key := range documented {
		if !served[key] {
			t.Errorf("%s documents %s but the admin API does not serve it", openAPIFile, key)
		}
	}
	for _, o := range ops {
		if id, _ := o.op["operationId"].(string); id == "" {
			t.Errorf("%s %s has no operationId", o.method, o.path)
		}
		if len(asMap(o.op["responses"])) == 0 {
			t.Errorf("%s %s documents no response", o.method, o.path)
		}
	}
	walkRefs(t, doc, doc, "#")
}

// walkRefs fails the test for every $ref in node that does not resolve.
func walkRefs(t *testing.T, doc map[string]any, node any, at string) {
	t.Helper()
	switch n := node.(type) {
	case map[string]any:
		if ref, ok := n["$ref"].(string); ok {
			if _, err := resolveRef(doc, ref); err != nil {
				t.Errorf("%s: %v", at, err)
			}
		}
		for k, v := range n {
			walkRefs(t, doc, v, at+"/"+k)
		}
	case []any:
		for i, v := range n {
			walkRefs(t, doc, v, at+"/"+strconv.Itoa(i))
		}
	}
}

// resolveRef follows a local JSON pointer ("#/components/schemas/X").
func resolveRef(doc map[string]any, ref string) (map[string]any, error) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Errorf("$ref %q is not local", ref)
	}
	var node any = doc
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := node.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("$ref %q does not resolve", ref)
		}
		if node, ok = m[part]; !ok {
			return nil, fmt.Errorf("$ref %q does not resolve", ref)
		}
	}
	m, ok := node.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("$ref %q is not an object", ref)
	}
	return m, nil
}

// deref returns node, or what its $ref chain points to.
func deref(t *testing.T, doc map[string]any, node map[string]any) map[string]any {
	t.Helper()
	for i := 0; node != nil && i < 10; i++ {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		var err error
		if node, err = resolveRef(doc, ref); err != nil {
			t.Fatal(err)
		}
	}
	return node
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

// checkSchema validates v (decoded with UseNumber) against the subset of
// JSON Schema the document uses: $ref, type, enum, format date-time,
// properties, required, additionalProperties false and items. It returns
// one message per mismatch.
func checkSchema(t *testing.T, doc, schema map[string]any, v any, at string) []string {
	t.Helper()
	schema = deref(t, doc, schema)
	var errs []string
	if typ, ok := schema["type"].(string); ok && !hasType(typ, v) {
		return []string{fmt.Sprintf("%s: %v is not of type %s", at, v, typ)}
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", at, v, enum))
	}
	if schema["format"] == "date-time" {
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(v)); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v is not a date-time", at, v))
		}
	}
	switch val := v.(type) {
	case map[string]any:
		props := asMap(schema["properties"])
		for _, r := range asSlice(schema["required"]) {
			if _, ok := val[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required property %q missing", at, r))
			}
		}
		for k, pv := range val {
			ps, ok := props[k]
			if !ok {
				if schema["additionalProperties"] == false {
					errs = append(errs, fmt.Sprintf("%s: property %q is not documented", at, k))
				}
				continue
			}
			errs = append(errs, checkSchema(t, doc, asMap(ps), pv, at+"."+k)...)
		}
	case []any:
		if items := asMap(schema["items"]); items != nil {
			for i, item := range val {
				errs = append(errs, checkSchema(t, doc, items, item, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	return errs
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// hasType reports whether a value decoded with UseNumber has JSON type typ.
func hasType(typ string, v any) bool {
	switch typ {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	}
	return false
}

// TestOpenAPIAgainstCaddy calls every documented operation through a real
// Caddy admin endpoint: the happy path with the documented example body,
// an unknown id, and a malformed body where one is taken. Each answer must
// have a documented status and match that status's documented schema. An
// undocumented method on a documented path is 405, an undocumented path
// 404.
func TestOpenAPIAgainstCaddy(t *testing.T) {
	doc, ops := loadOpenAPI(t)
	rc := newReceiver(t)
	upstream := httptest.NewServer(http.NotFoundHandler())
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, siteConfig(`
		storage memory
		retry 50ms
		allow_private_targets
		trusted_ca_file `+writeCA(t, rc), upstream.Listener.Addr().String()))

	// Create first, then make a delivery, delete last.
	rank := map[string]int{"createWebhook": -2, "testWebhook": -1, "deleteWebhook": 1}
	sort.SliceStable(ops, func(i, j int) bool {
		return rank[ops[i].op["operationId"].(string)] < rank[ops[j].op["operationId"].(string)]
	})
	if ops[0].op["operationId"] != "createWebhook" {
		t.Fatalf("no createWebhook operation in %s", openAPIFile)
	}

	var webhookID, deliveryID string
	// call sends one request and checks the answer against the document.
	call := func(o apiOperation, path string, body []byte) (int, any) {
		t.Helper()
		var b any
		if body != nil {
			b = string(body)
		}
		status, out := adminCall(t, o.method, path, b)
		resp := asMap(asMap(o.op["responses"])[strconv.Itoa(status)])
		if resp == nil {
			t.Errorf("%s %s: status %d is not documented: %s", o.method, path, status, out)
			return status, nil
		}
		resp = deref(t, doc, resp)
		schema := asMap(asMap(asMap(resp["content"])["application/json"])["schema"])
		if schema == nil {
			if len(bytes.TrimSpace(out)) != 0 {
				t.Errorf("%s %s: %d documents no body, got %s", o.method, path, status, out)
			}
			return status, nil
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Errorf("%s %s: %d: body is not JSON: %v: %s", o.method, path, status, err, out)
			return status, nil
		}
		for _, e := range checkSchema(t, doc, schema, v, "body") {
			t.Errorf("%s %s: %d: %s", o.method, path, status, e)
		}
		return status, v
	}
	// example returns the operation's example body, aimed at the receiver.
	example := func(o apiOperation) []byte {
		t.Helper()
		rb := deref(t, doc, asMap(o.op["requestBody"]))
		ex := asMap(asMap(asMap(rb["content"])["application/json"])["example"])
		if ex == nil {
			return nil
		}
		if _, ok := ex["url"]; ok {
			ex["url"] = rc.url("/openapi")
		}
		b, err := json.Marshal(ex)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	fill := func(path, webhook, delivery string) string {
		if strings.HasPrefix(path, "/echo3d/deliveries/") {
			return strings.Replace(path, "{id}", delivery, 1)
		}
		return strings.Replace(path, "{id}", webhook, 1)
	}

	for _, o := range ops {
		id := o.op["operationId"].(string)
		t.Run(id, func(t *testing.T) {
			if id == "listAttempts" {
				waitForAttempts(t, webhookID, 1)
			}
			status, v := call(o, fill(o.path, webhookID, deliveryID), example(o))
			if status < 200 || status > 299 {
				t.Fatalf("%s %s: status %d, want 2xx", o.method, o.path, status)
			}
			switch id {
			case "createWebhook":
				webhookID, _ = asMap(v)["id"].(string)
			case "testWebhook":
				deliveryID, _ = asMap(v)["id"].(string)
			}
			if strings.Contains(o.path, "{id}") {
				if status, _ := call(o, fill(o.path, "wh_missing", "msg_missing"), example(o)); status != http.StatusNotFound {
					t.Errorf("%s %s with an unknown id: status %d, want 404", o.method, o.path, status)
				}
			}
			if rb := deref(t, doc, asMap(o.op["requestBody"])); rb != nil && rb["required"] == true {
				if status, _ := call(o, fill(o.path, webhookID, deliveryID), []byte("{")); status != http.StatusBadRequest {
					t.Errorf("%s %s with a malformed body: status %d, want 400", o.method, o.path, status)
				}
			}
		})
		if webhookID == "" {
			t.Fatal("createWebhook returned no id")
		}
	}
	if deliveryID == "" {
		t.Error("testWebhook returned no delivery id")
	}

	// Every documented path answers an undocumented method with 405, and a
	// path outside the document is 404.
	paths := map[string][]string{}
	for _, o := range ops {
		paths[o.path] = append(paths[o.path], o.method)
	}
	for path, methods := range paths {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			if slices.Contains(methods, m) {
				continue
			}
			if status, body := adminCall(t, m, fill(path, "wh_x", "msg_x"), nil); status != http.StatusMethodNotAllowed {
				t.Errorf("%s %s (undocumented): status %d, want 405: %s", m, path, status, body)
			}
		}
	}
	for _, path := range []string{"/echo3d/webhooks/x/y", "/echo3d/nothing", "/echo3d/deliveries/x"} {
		if status, body := adminCall(t, http.MethodGet, path, nil); status != http.StatusNotFound {
			t.Errorf("GET %s (undocumented): status %d, want 404: %s", path, status, body)
		}
	}
}

// waitForAttempts waits until the webhook's attempt list (through the
// admin API) holds at least n attempts.
func waitForAttempts(t *testing.T, webhookID string, n int) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitWithin)
	for {
		status, body := adminCall(t, http.MethodGet, "/echo3d/webhooks/"+webhookID+"/deliveries", nil)
		var page struct{ Attempts []json.RawMessage }
		if status == http.StatusOK && json.Unmarshal(body, &page) == nil && len(page.Attempts) >= n {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("fewer than %d attempts recorded within %s: %d %s", n, waitWithin, status, body)
		}
	}
}
