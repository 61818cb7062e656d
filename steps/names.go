package steps

import (
	"strings"

	"github.com/pgshift/pgshift/engine"
)

// defaultObjectName is pgshift_<spec name> with '-' replaced by '_', the name
// of the publication, subscription and slot when the spec leaves them "".
func defaultObjectName(spec *engine.Spec) string {
	return "pgshift_" + strings.ReplaceAll(spec.Name, "-", "_")
}

// PublicationName is the publication on blue.
func PublicationName(spec *engine.Spec) string {
	if spec.Replication.Publication != "" {
		return spec.Replication.Publication
	}
	return defaultObjectName(spec)
}

// SubscriptionName is the subscription on green.
func SubscriptionName(spec *engine.Spec) string {
	if spec.Replication.Subscription != "" {
		return spec.Replication.Subscription
	}
	return defaultObjectName(spec)
}

// SlotName is the logical replication slot on blue.
func SlotName(spec *engine.Spec) string {
	if spec.Replication.Slot != "" {
		return spec.Replication.Slot
	}
	return defaultObjectName(spec)
}
