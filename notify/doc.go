// Package notify tells the operator's push service that a message was queued
// for a wallet that has no live session anywhere in the cluster, so that the
// service can wake the phone (FCM, APNs, or anything else).
//
// The forward path calls [Notifier.MessageQueued]; implementations must never
// block it. [Webhook] is the production implementation: it coalesces events
// per connection, delivers them from a few background workers with bounded
// retries, and drops (and counts) events when its bounded buffer is full.
// [Multi] fans one event out to several notifiers.
//
// # Webhook request
//
// Each delivery is an HTTP POST to the configured URL with
//
//	Content-Type: application/json
//	User-Agent: didcomm-mediator
//	X-Mediator-Delivery: <random hex id, the same on every retry of one call>
//
// and a body such as
//
//	{
//	  "type": "message-queued",
//	  "connection_id": "4a1f…",
//	  "message_id": "9c0e…",               // the newest message coalesced
//	  "recipient_key": "8HH5gYEeNc3z7PYX…", // base58
//	  "queued_at": "2024-05-01T12:00:00.123Z", // RFC 3339, UTC, newest message
//	  "coalesced": 3,                       // events folded into this call
//	  "device_token": "…",                  // omitted when unknown
//	  "device_platform": "android"          // omitted when unknown
//	}
//
// The message content itself is never sent. A 2xx response means delivered.
// Network errors, 429 and 5xx are retried with exponential backoff and jitter
// (from 500ms, doubling, capped at 30s; a Retry-After given in seconds is
// honoured up to that cap); any other status gives up. Redirects are not
// followed by the default client. Receivers should treat the call as "at
// least once" and may de-duplicate on X-Mediator-Delivery.
//
// # Signature
//
// When [WebhookConfig.Secret] is set, every attempt carries
//
//	X-Mediator-Timestamp: <unix seconds at the time of the attempt>
//	X-Mediator-Signature: sha256=<lower-case hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// where body is the exact bytes of the request body. To verify, a receiver
// recomputes the HMAC over the timestamp header, a single '.', and the raw
// body, compares it with the header value in constant time (for example with
// [crypto/hmac.Equal]), and rejects timestamps too far from its own clock (a few
// minutes) to limit replays. Without a secret neither header is sent.
//
// The mediator itself rejects nothing: signing is purely for the receiver.
package notify
