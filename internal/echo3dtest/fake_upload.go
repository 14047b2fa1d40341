package echo3dtest

import (
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// asset is what an upload adds: the hologram's main file and, for legacy
// obj uploads, its material and textures.
type asset struct {
	filename         string
	storageID        string
	materialFilename string
	textures         []string
}

// upload handles POST /upload: a new entry, or a new hologram for the entry
// named by entryId (or entry) when it exists. The file comes from a file
// part ("file", or the legacy "file_model" parts), a "url" (or "url_video")
// or an "s3StorageId". Without noProcessingWait=true the answer is the
// processed entry; with it, the entry as first saved, processed
// ProcessingDelay later.
func (s *Server) upload(w http.ResponseWriter, c *call) {
	a, ok := uploadedAsset(c)
	if !ok {
		writeText(w, http.StatusBadRequest, msgNoFileOrURL)
		return
	}
	now := s.opts.Now()
	var delay time.Duration
	if c.isTrue("noProcessingWait") {
		delay = s.opts.ProcessingDelay
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	col := s.collectionFor(c.key, true)
	e := s.existingEntry(c)
	if e == nil {
		e = &entry{
			id:     newID(),
			target: targetJSON{ID: newID(), Type: targetType(c.params.Get("target_type"))},
			additionalData: map[string]string{
				"createdAt":     millis(now),
				"accessHistory": `["` + millis(now) + `"]`,
			},
		}
		col.entries[e.id] = e
	}
	e.hologram = newHologram(a, e.target.ID)
	e.target.Holograms = append(e.target.Holograms, e.hologram.ID)
	if data := c.params.Get("data"); data != "" {
		for k, v := range parseDataPairs(data) {
			e.additionalData[k] = v
		}
	}
	e.startProcessing(now, delay)
	writeJSON(w, http.StatusOK, e.render())
}

// existingEntry returns the entry an upload edits (entryId or entry naming
// an entry of the collection), or nil. s.mu must be held.
func (s *Server) existingEntry(c *call) *entry {
	for _, name := range []string{"entryId", "entry"} {
		if id := c.params.Get(name); id != "" {
			if e := s.lookupEntry(c.key, id); e != nil {
				return e
			}
		}
	}
	return nil
}

// newHologram describes a freshly uploaded hologram.
func newHologram(a asset, targetID string) hologramJSON {
	h := hologramJSON{
		Filename:          a.filename,
		StorageID:         a.storageID,
		TextureFilenames:  []string{},
		TextureStorageIDs: []string{},
		ID:                newID(),
		Type:              hologramType(a.filename),
		TargetID:          targetID,
	}
	if a.materialFilename != "" {
		h.MaterialFilename = a.materialFilename
		h.MaterialStorageID = newID()
	}
	for _, t := range a.textures {
		h.TextureFilenames = append(h.TextureFilenames, t)
		h.TextureStorageIDs = append(h.TextureStorageIDs, newID())
	}
	return h
}

// uploadedAsset works out what an upload carries. ok is false when there is
// no file part, url or s3StorageId.
func uploadedAsset(c *call) (asset, bool) {
	if len(c.files) > 0 {
		return fileAsset(c.files), true
	}
	for _, name := range []string{"url", "url_video"} {
		if raw := c.params.Get(name); raw != "" {
			filename := path.Base(raw)
			if u, err := url.Parse(raw); err == nil && u.Path != "" {
				filename = path.Base(u.Path)
			}
			return asset{filename: filename, storageID: newID()}, true
		}
	}
	if sid := c.params.Get("s3StorageId"); sid != "" {
		filename := c.params.Get("filename")
		if filename == "" {
			filename = sid
		}
		return asset{filename: filename, storageID: strings.TrimSuffix(sid, path.Ext(sid))}, true
	}
	return asset{}, false
}

// fileAsset picks the hologram's main file among the file parts: the
// "file" part if any, else the first part that is neither a material (.mtl)
// nor an image, else the first part. Other .mtl and image parts become the
// material and textures.
func fileAsset(files []receivedFile) asset {
	main := -1
	for i, f := range files {
		if f.field == "file" {
			main = i
			break
		}
	}
	if main < 0 {
		for i, f := range files {
			if !isMaterial(f.filename) && !isImage(f.filename) {
				main = i
				break
			}
		}
	}
	if main < 0 {
		main = 0
	}
	a := asset{filename: files[main].filename, storageID: newID()}
	for i, f := range files {
		switch {
		case i == main:
		case isMaterial(f.filename) && a.materialFilename == "":
			a.materialFilename = f.filename
		case isImage(f.filename):
			a.textures = append(a.textures, f.filename)
		}
	}
	return a
}

// isMaterial reports whether filename is an obj material file.
func isMaterial(filename string) bool {
	return strings.EqualFold(path.Ext(filename), ".mtl")
}
