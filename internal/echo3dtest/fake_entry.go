package echo3dtest

import (
	"crypto/rand"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// Keys that processing writes into an entry's additionalData.
var derivedKeys = []string{
	"glbHologramStorageFilename",
	"glbHologramStorageID",
	"usdzHologramStorageID",
	"screenshotStorageID",
	"compressedImageStorageID",
}

// sdkFlags is the "sdks" array of every fake entry.
var sdkFlags = []bool{true, true, false, true, false, false, false, true, true}

// entry is one asset of a fake collection.
type entry struct {
	id             string
	target         targetJSON
	hologram       hologramJSON
	additionalData map[string]string
	// pendingUntil is when the current hologram finishes processing; zero
	// once it has.
	pendingUntil time.Time
}

// entryJSON is the echo3D entry object.
type entryJSON struct {
	ID             string            `json:"id"`
	Target         targetJSON        `json:"target"`
	Hologram       hologramJSON      `json:"hologram"`
	SDKs           []bool            `json:"sdks"`
	AdditionalData map[string]string `json:"additionalData"`
}

// targetJSON is the "target" of an entry object.
type targetJSON struct {
	ID        string   `json:"id"`
	Type      string   `json:"type"`
	Holograms []string `json:"holograms"`
}

// hologramJSON is the "hologram" of an entry object.
type hologramJSON struct {
	Filename          string   `json:"filename"`
	StorageID         string   `json:"storageID"`
	TextureFilenames  []string `json:"textureFilenames"`
	TextureStorageIDs []string `json:"textureStorageIDs"`
	MaterialFilename  string   `json:"materialFilename,omitempty"`
	MaterialStorageID string   `json:"materialStorageID,omitempty"`
	ID                string   `json:"id"`
	Type              string   `json:"type"`
	TargetID          string   `json:"targetID"`
}

// render returns the entry object as the API shows it.
func (e *entry) render() entryJSON {
	data := make(map[string]string, len(e.additionalData))
	for k, v := range e.additionalData {
		data[k] = v
	}
	h := e.hologram
	h.TextureFilenames = append([]string{}, h.TextureFilenames...)
	h.TextureStorageIDs = append([]string{}, h.TextureStorageIDs...)
	t := e.target
	t.Holograms = append([]string{}, t.Holograms...)
	return entryJSON{
		ID:             e.id,
		Target:         t,
		Hologram:       h,
		SDKs:           append([]bool{}, sdkFlags...),
		AdditionalData: data,
	}
}

// settle finishes pending processing whose time has come.
func (e *entry) settle(now time.Time) {
	if e.pendingUntil.IsZero() || now.Before(e.pendingUntil) {
		return
	}
	e.pendingUntil = time.Time{}
	e.process()
}

// startProcessing either processes the current hologram at once, or, when
// delay is positive, marks it to be processed delay after now.
func (e *entry) startProcessing(now time.Time, delay time.Duration) {
	for _, k := range derivedKeys {
		delete(e.additionalData, k)
	}
	if delay <= 0 {
		e.pendingUntil = time.Time{}
		e.process()
		return
	}
	e.pendingUntil = now.Add(delay)
}

// process writes the derived-file ids of the current hologram: GLB, USDZ
// and screenshot for models; compressed image and screenshot for images.
func (e *entry) process() {
	h := e.hologram
	if h.Type == imageHologram {
		ext := strings.TrimPrefix(path.Ext(h.Filename), ".")
		e.additionalData["compressedImageStorageID"] = newID() + "." + strings.ToLower(ext)
		e.additionalData["screenshotStorageID"] = newID() + ".png"
		return
	}
	stem := strings.TrimSuffix(h.Filename, path.Ext(h.Filename))
	e.additionalData["glbHologramStorageFilename"] = stem + ".glb"
	e.additionalData["glbHologramStorageID"] = h.StorageID + ".glb"
	e.additionalData["usdzHologramStorageID"] = h.StorageID + ".usdz"
	e.additionalData["screenshotStorageID"] = newID() + ".png"
}

// Hologram and target types.
const (
	modelHologram     = "MODEL_HOLOGRAM"
	imageHologram     = "IMAGE_HOLOGRAM"
	brickTarget       = "BRICK_TARGET"
	imageTarget       = "IMAGE_TARGET"
	geolocationTarget = "GEOLOCATION_TARGET"
)

// targetType maps the upload's target_type (0 image, 1 geolocation, 2 none)
// to a target type.
func targetType(param string) string {
	switch param {
	case "0":
		return imageTarget
	case "1":
		return geolocationTarget
	default:
		return brickTarget
	}
}

// hologramType returns the hologram type of a file by its extension.
func hologramType(filename string) string {
	if isImage(filename) {
		return imageHologram
	}
	return modelHologram
}

// isImage reports whether filename has an image extension (png, jpg, jpeg).
func isImage(filename string) bool {
	switch strings.ToLower(path.Ext(filename)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// parseDataPairs parses an upload's "data" parameter, "k1:v1;k2:v2". A
// value may contain ':'; pairs without a key are skipped.
func parseDataPairs(s string) map[string]string {
	pairs := map[string]string{}
	for _, item := range strings.Split(s, ";") {
		k, v, _ := strings.Cut(item, ":")
		if k = strings.TrimSpace(k); k != "" {
			pairs[k] = v
		}
	}
	return pairs
}

// millis formats t as echo3D's millisecond epoch string.
func millis(t time.Time) string {
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// newID returns a random (version 4) UUID string.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
