package events

import (
	"net/http"
	"slices"
)

// apiKeyParam is the request parameter holding the collection key, which
// becomes a payload's apiKey. A request without it derives nothing.
const apiKeyParam = "key"

// Lookup is a read made before forwarding, to learn a value the request
// does not carry (the value a /remove is about to delete).
type Lookup struct {
	// Path is the upstream path of the read, e.g. "/get".
	Path string
	// Params names the request parameters copied into the read's query,
	// e.g. key, email, userKey, secKey, entry, data.
	Params []string
}

// Rule maps one echo3D endpoint to the events its successful calls derive.
// Rules are data: DefaultRules holds echo3D's, and Derive interprets them.
type Rule struct {
	// Name identifies the rule in errors and Overrides: "upload",
	// "delete", "post", "remove", "batchpost".
	Name string
	// Path is the endpoint path, lower case, without a trailing slash.
	Path string
	// Methods lists the HTTP methods matched; nil matches any method.
	Methods []string
	// Trigger is the event derived when no entry reference is present.
	Trigger Trigger
	// EntryTrigger is the event derived when one is; "" means Trigger.
	EntryTrigger Trigger
	// EntryParams names the parameters that reference entries. Their
	// values are split at commas, trimmed, stripped of empties and
	// de-duplicated, in the order the parameters appear in the request.
	EntryParams []string
	// RequireEntries makes a request without any entry id derive nothing.
	RequireEntries bool
	// ResponseID is the gjson path of the entry id in the response. When
	// set, the response must be a complete, valid JSON object with a
	// non-empty string there, else nothing is derived; that id is the
	// event's only entry id, also for EntryTrigger (the response says
	// which entry the upstream changed).
	ResponseID string
	// MetaKeyParam names the parameter holding the metadata key. When
	// set, a request without a non-empty key derives nothing.
	MetaKeyParam string
	// MetaValueParam names the parameter holding the metadata value; ""
	// when the value comes from Lookup.
	MetaValueParam string
	// Lookup, when set, is made before forwarding; its result is the
	// metadata value.
	Lookup *Lookup
	// Processed makes an event with Trigger (not EntryTrigger) be followed
	// by a Processed event when the response shows the entry processed
	// (EntryProcessed) and the NoWaitParam parameter is not "true".
	Processed bool
	// NoWaitParam names the parameter that asks the upstream not to wait
	// for processing.
	NoWaitParam string
	// Observe marks a read-only endpoint that derives nothing but whose
	// success responses are shown to the Processed watches (passive
	// detection of processed entries in /query listings). Such a rule has
	// no trigger and no other field but Name, Path and Methods.
	Observe bool
}

// DefaultRules returns echo3D's rules (SPEC §2). Where echo3d-api.md marks
// an endpoint's method or parameters unconfirmed (/delete, the edit
// parameter of /upload), the rule accepts every plausible form; Overrides
// replace the unconfirmed parameter names.
func DefaultRules() []Rule {
	return []Rule{
		{
			Name:         "upload",
			Path:         "/upload",
			Methods:      []string{http.MethodPost},
			Trigger:      Upload,
			EntryTrigger: Edit,
			EntryParams:  []string{"entryId", "entry"},
			ResponseID:   "id",
			Processed:    true,
			NoWaitParam:  "noProcessingWait",
		},
		{
			Name:           "delete",
			Path:           "/delete",
			Methods:        []string{http.MethodGet, http.MethodPost, http.MethodDelete},
			Trigger:        Delete,
			EntryParams:    []string{"entry", "entries", "id"},
			RequireEntries: true,
		},
		{
			Name:           "post",
			Path:           "/post",
			Methods:        []string{http.MethodPost},
			Trigger:        CollectionMetadataAdd,
			EntryTrigger:   AssetMetadataAdd,
			EntryParams:    []string{"entry"},
			MetaKeyParam:   "data",
			MetaValueParam: "value",
		},
		{
			Name:         "remove",
			Path:         "/remove",
			Methods:      []string{http.MethodPost},
			Trigger:      CollectionMetadataRemove,
			EntryTrigger: AssetMetadataRemove,
			EntryParams:  []string{"entry"},
			MetaKeyParam: "data",
			Lookup: &Lookup{
				Path:   "/get",
				Params: []string{"key", "email", "userKey", "secKey", "entry", "data"},
			},
		},
		{
			Name:           "batchpost",
			Path:           "/batchpost",
			Methods:        []string{http.MethodPost},
			Trigger:        AssetMetadataAdd,
			EntryParams:    []string{"entries"},
			RequireEntries: true,
			MetaKeyParam:   "data",
			MetaValueParam: "value",
		},
		{
			// Read-only: derives nothing; its listings resolve watched
			// uploads whose entries they show processed.
			Name:    "query",
			Path:    "/query",
			Methods: []string{http.MethodGet, http.MethodPost},
			Observe: true,
		},
	}
}

// Overrides replaces the parameter names of the rules whose echo3D
// parameters are unconfirmed, so an operator can fix them without a
// rebuild.
type Overrides struct {
	// DeleteParams replaces the "delete" rule's EntryParams when non-empty.
	DeleteParams []string
	// EditParams replaces the "upload" rule's EntryParams (default entryId,
	// entry) when non-empty.
	EditParams []string
}

// NeedsResponseBody reports whether Derive reads the response body, so the
// handler must capture it.
func (r *Rule) NeedsResponseBody() bool {
	return r.ResponseID != ""
}

// NeedsLookup reports whether a lookup must be made before forwarding.
func (r *Rule) NeedsLookup() bool {
	return r.Lookup != nil
}

// clone returns a deep copy of r.
func (r Rule) clone() Rule {
	r.Methods = slices.Clone(r.Methods)
	r.EntryParams = slices.Clone(r.EntryParams)
	if r.Lookup != nil {
		l := *r.Lookup
		l.Params = slices.Clone(l.Params)
		r.Lookup = &l
	}
	return r
}
