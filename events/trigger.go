// Package events turns one proxied echo3D API exchange (request parameters,
// response status and body) into webhook payloads. It holds the echo3D
// mapping as a table of rules and knows nothing about Caddy.
package events

// Trigger is the name of an echo3D webhook trigger, as it appears in the
// "event" field of a payload and in a webhook's trigger list.
type Trigger string

// The nine trigger names. AssetStatusUpdate is reserved: webhooks may
// subscribe to it, but nothing derives it until its endpoint is known.
const (
	Upload                   Trigger = "Upload"
	Processed                Trigger = "Processed"
	Edit                     Trigger = "Edit"
	Delete                   Trigger = "Delete"
	CollectionMetadataAdd    Trigger = "CollectionMetadataAdd"
	CollectionMetadataRemove Trigger = "CollectionMetadataRemove"
	AssetMetadataAdd         Trigger = "AssetMetadataAdd"
	AssetMetadataRemove      Trigger = "AssetMetadataRemove"
	AssetStatusUpdate        Trigger = "AssetStatusUpdate"
)

// AllTriggers lists every trigger name in documentation order.
var AllTriggers = []Trigger{
	Upload, Processed, Edit, Delete,
	CollectionMetadataAdd, CollectionMetadataRemove,
	AssetMetadataAdd, AssetMetadataRemove,
	AssetStatusUpdate,
}

// ValidTrigger reports whether name is one of the nine trigger names
// (exact, case-sensitive match).
func ValidTrigger(name string) bool {
	for _, t := range AllTriggers {
		if string(t) == name {
			return true
		}
	}
	return false
}
