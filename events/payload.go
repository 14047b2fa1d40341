package events

import "encoding/json"

// Payload is the JSON body of one webhook delivery, exactly as echo3D
// documents it. Field order is fixed by the struct; the arrays are never
// null when marshalled.
type Payload struct {
	// Event is the trigger name.
	Event Trigger `json:"event"`
	// APIKey is the collection key (the request's "key" parameter).
	APIKey string `json:"apiKey"`
	// EntryIDs lists the entries concerned, in request order.
	EntryIDs []string `json:"entryIds"`
	// MetadataKeys pairs index by index with MetadataValues.
	MetadataKeys []string `json:"metadataKeys"`
	// MetadataValues pairs index by index with MetadataKeys.
	MetadataValues []string `json:"metadataValues"`
}

// MarshalJSON encodes the payload with empty arrays in place of nil ones.
func (p Payload) MarshalJSON() ([]byte, error) {
	type plain Payload
	q := plain(p)
	if q.EntryIDs == nil {
		q.EntryIDs = []string{}
	}
	if q.MetadataKeys == nil {
		q.MetadataKeys = []string{}
	}
	if q.MetadataValues == nil {
		q.MetadataValues = []string{}
	}
	return json.Marshal(q)
}
