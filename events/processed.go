package events

import (
	"strings"

	"github.com/tidwall/gjson"
)

// The additionalData keys of the files echo3D derives when it processes an
// asset (echo3d-api.md §4-5).
const (
	glbKey             = "glbHologramStorageID"
	usdzKey            = "usdzHologramStorageID"
	screenshotKey      = "screenshotStorageID"
	compressedImageKey = "compressedImageStorageID"
)

// derivedKeys lists every derived-file key, for hologram types without a
// more specific signal.
var derivedKeys = []string{glbKey, usdzKey, screenshotKey, compressedImageKey}

// EntryProcessed reports whether an entry object (from an /upload response
// or a /query listing) shows that echo3D finished processing it. echo3D
// documents no status field, so the signal is the derived files it writes
// into additionalData, a key counting only when its value is a non-blank
// string:
//
//   - MODEL_HOLOGRAM: glbHologramStorageID (a GLB is always produced for
//     models; usdzHologramStorageID and screenshotStorageID usually come
//     with it but are not required).
//   - IMAGE_HOLOGRAM: compressedImageStorageID or screenshotStorageID.
//   - VIDEO_HOLOGRAM, and an absent or unknown hologram type: any of
//     glbHologramStorageID, usdzHologramStorageID, screenshotStorageID,
//     compressedImageStorageID.
//
// Anything that is not an object with an additionalData object is not
// processed.
func EntryProcessed(entry gjson.Result) bool {
	if !entry.IsObject() {
		return false
	}
	data := entry.Get("additionalData")
	if !data.IsObject() {
		return false
	}
	switch entry.Get("hologram.type").String() {
	case "MODEL_HOLOGRAM":
		return hasDerived(data, glbKey)
	case "IMAGE_HOLOGRAM":
		return hasDerived(data, compressedImageKey, screenshotKey)
	}
	return hasDerived(data, derivedKeys...)
}

// hasDerived reports whether data has a non-blank string under any of keys.
func hasDerived(data gjson.Result, keys ...string) bool {
	for _, k := range keys {
		v := data.Get(k)
		if v.Type == gjson.String && strings.TrimSpace(v.Str) != "" {
			return true
		}
	}
	return false
}

// QueryEntry returns db[id] from a /query response body
// ({"apiKey": ..., "db": {<id>: entry, ...}}). ok is false when the body is
// not valid JSON or holds no such entry object. The id is escaped, so ids
// containing gjson path syntax are looked up literally.
func QueryEntry(body []byte, id string) (entry gjson.Result, ok bool) {
	if id == "" || !gjson.ValidBytes(body) {
		return gjson.Result{}, false
	}
	entry = gjson.GetBytes(body, "db."+gjson.Escape(id))
	if !entry.IsObject() {
		return gjson.Result{}, false
	}
	return entry, true
}
