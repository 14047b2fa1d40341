package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// typeError turns a JSON type mismatch while decoding into v (a pointer to
// a struct) into a 400 naming the field and the JSON type it must have.
func typeError(v any, e *json.UnmarshalTypeError) error {
	field, _, _ := strings.Cut(e.Field, ".")
	if field == "" {
		return apiError(http.StatusBadRequest, "body: must be a JSON object")
	}
	return apiError(http.StatusBadRequest, "%s: must be %s", field, jsonFieldKind(v, field))
}

// jsonFieldKind describes the JSON type of the struct field of v whose JSON
// name is name.
func jsonFieldKind(v any, name string) string {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return "a string"
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag != name {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch ft.Kind() {
		case reflect.Slice:
			return "an array of strings"
		case reflect.Bool:
			return "a boolean"
		case reflect.Int, reflect.Int64:
			return "an integer"
		}
		return "a string"
	}
	return "a string"
}

// createMu makes counting a collection's webhooks and creating one atomic,
// so concurrent creates cannot pass max_webhooks_per_collection together.
var createMu sync.Mutex

// collectionRoom returns a 400 naming apiKey when its collection already
// has the most webhooks allowed. createMu must be held.
func collectionRoom(app *App, st *store.Store, apiKey string) error {
	max := app.MaxWebhooksPerCollection
	if max <= 0 {
		return nil
	}
	hooks, err := st.ListWebhooks(apiKey)
	if err != nil {
		return storeFailure("listing webhooks", err)
	}
	if len(hooks) >= max {
		return apiError(http.StatusBadRequest,
			"apiKey: collection %q already has %d webhooks, the most allowed (max_webhooks_per_collection); delete one first",
			apiKey, len(hooks))
	}
	return nil
}

// storeFailure answers a failed store operation: 404 for a missing record,
// otherwise 503 with the reason (store closed, disk full, I/O error), since
// the request itself was fine and may succeed once the store recovers.
func storeFailure(op string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return apiError(http.StatusNotFound, "%s: %v", op, err)
	}
	return apiError(http.StatusServiceUnavailable, "webhook store unavailable: %s: %v", op, err)
}
