// Package sink delivers stored webhook deliveries to their receivers: it
// leases due deliveries from an Outbox, POSTs them signed with the Standard
// Webhooks v1 scheme through an SSRF-safe HTTP client, and records each
// attempt with its outcome (success, retry on a jittered schedule, failure,
// or disabling the webhook on 410 Gone). A per-webhook circuit breaker
// pauses a webhook whose recent attempts mostly fail and probes it one
// delivery at a time; a webhook failing for too long is disabled. Paused
// and disabled webhooks' deliveries stay in the Outbox.
//
// The package knows nothing about Caddy; package store provides the Outbox.
package sink
