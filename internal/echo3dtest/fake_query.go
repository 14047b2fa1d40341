package echo3dtest

import "net/http"

// queryResponse is the /query envelope.
type queryResponse struct {
	APIKey string               `json:"apiKey"`
	DB     map[string]entryJSON `json:"db"`
}

// query handles GET|POST /query: the whole collection, or the entries named
// by entry and entries (comma lists). When entries are named and none
// exists the answer is 404 "Entry not found" (the Unity SDK treats any
// body containing "not found" as a failure). File downloads (file=) are not
// supported and get 404 "Data not found".
func (s *Server) query(w http.ResponseWriter, c *call) {
	if c.params.Get("file") != "" {
		writeText(w, http.StatusNotFound, msgDataNotFound)
		return
	}
	ids := c.idList("entry", "entries")

	s.mu.Lock()
	defer s.mu.Unlock()
	resp := queryResponse{APIKey: c.key, DB: map[string]entryJSON{}}
	if len(ids) == 0 {
		if col := s.collections[c.key]; col != nil {
			for id := range col.entries {
				resp.DB[id] = s.lookupEntry(c.key, id).render()
			}
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	for _, id := range ids {
		if e := s.lookupEntry(c.key, id); e != nil {
			resp.DB[id] = e.render()
		}
	}
	if len(resp.DB) == 0 {
		writeText(w, http.StatusNotFound, msgEntryNotFound)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// delete handles GET|POST|DELETE /delete: the entries named by entry,
// entries or id (comma lists) are removed. 200 "Entry deleted" or "Entries
// deleted" when at least one existed, 404 "Entry not found" when none did,
// 400 when no id is given.
func (s *Server) delete(w http.ResponseWriter, c *call) {
	ids := c.idList("entry", "entries", "id")
	if len(ids) == 0 {
		writeText(w, http.StatusBadRequest, msgNoEntry)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	deleted := 0
	if col := s.collections[c.key]; col != nil {
		for _, id := range ids {
			if _, ok := col.entries[id]; ok {
				delete(col.entries, id)
				deleted++
			}
		}
	}
	switch deleted {
	case 0:
		writeText(w, http.StatusNotFound, msgEntryNotFound)
	case 1:
		writeText(w, http.StatusOK, "Entry deleted")
	default:
		writeText(w, http.StatusOK, "Entries deleted")
	}
}
