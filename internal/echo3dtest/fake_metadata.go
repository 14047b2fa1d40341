package echo3dtest

import "net/http"

// metadataTarget returns the metadata map a /get, /post or /remove acts on:
// the entry's additionalData when "entry" is given, else the collection's
// metadata. found is false when the named entry does not exist. create
// makes the collection if needed. s.mu must be held.
func (s *Server) metadataTarget(c *call, create bool) (data map[string]string, found bool) {
	if id := c.params.Get("entry"); id != "" {
		e := s.lookupEntry(c.key, id)
		if e == nil {
			return nil, false
		}
		return e.additionalData, true
	}
	col := s.collectionFor(c.key, create)
	if col == nil {
		return nil, true
	}
	return col.data, true
}

// get handles GET /get: the value of metadata key "data" of the collection,
// or of the entry named by "entry", as text. 400 when data is missing, 404
// "Data not found" when the key or the entry does not exist.
func (s *Server) get(w http.ResponseWriter, c *call) {
	name := c.params.Get("data")
	if name == "" {
		writeText(w, http.StatusBadRequest, msgNoDataValue)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	data, _ := s.metadataTarget(c, false)
	value, ok := data[name]
	if !ok {
		writeText(w, http.StatusNotFound, msgDataNotFound)
		return
	}
	writeText(w, http.StatusOK, value)
}

// post handles POST /post: sets metadata key "data" to "value" on the
// collection, or on the entry named by "entry", and answers the value as
// text. 400 when data or value is missing or empty, 404 "Entry not found"
// when the entry does not exist.
func (s *Server) post(w http.ResponseWriter, c *call) {
	name, value := c.params.Get("data"), c.params.Get("value")
	if name == "" || value == "" {
		writeText(w, http.StatusBadRequest, msgNoDataValue)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	data, found := s.metadataTarget(c, true)
	if !found {
		writeText(w, http.StatusNotFound, msgEntryNotFound)
		return
	}
	data[name] = value
	writeText(w, http.StatusOK, value)
}

// remove handles POST /remove: deletes metadata key "data" from the
// collection, or from the entry named by "entry", and answers the key as
// text. 400 when data is missing, 404 "Data not found" when the key or the
// entry does not exist.
func (s *Server) remove(w http.ResponseWriter, c *call) {
	name := c.params.Get("data")
	if name == "" {
		writeText(w, http.StatusBadRequest, msgNoDataValue)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	data, _ := s.metadataTarget(c, false)
	if _, ok := data[name]; !ok {
		writeText(w, http.StatusNotFound, msgDataNotFound)
		return
	}
	delete(data, name)
	writeText(w, http.StatusOK, name)
}

// batchPost handles POST /batchpost: sets metadata key "data" to "value" on
// every existing entry named in "entries" and answers the value as text.
// Unknown ids are skipped; 404 "Entry not found" when none exists, 400 when
// entries, data or value is missing.
func (s *Server) batchPost(w http.ResponseWriter, c *call) {
	ids := c.idList("entries")
	name, value := c.params.Get("data"), c.params.Get("value")
	if len(ids) == 0 {
		writeText(w, http.StatusBadRequest, "Invalid request! No entries found in request.")
		return
	}
	if name == "" || value == "" {
		writeText(w, http.StatusBadRequest, msgNoDataValue)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	updated := 0
	for _, id := range ids {
		if e := s.lookupEntry(c.key, id); e != nil {
			e.additionalData[name] = value
			updated++
		}
	}
	if updated == 0 {
		writeText(w, http.StatusNotFound, msgEntryNotFound)
		return
	}
	writeText(w, http.StatusOK, value)
}
