// Package metrics is the mediator's Prometheus instrumentation: every metric
// of one process on one prometheus.Registry (never the global default one),
// served by the admin listener on /metrics.
//
// The packages that do the work do not import it. Each declares the small
// interface it needs where it is used (mediator.Observer, pickup.Observer,
// the transport's OnSocketOpen/OnSocketClose hooks, notify.WebhookConfig's
// OnResult, queuepg.ClusterOptions' OnNotifyLag, LimitObserver), and
// *Metrics implements them all; pull-style values (live sessions, the LISTEN
// connection, the pgx pool, readiness) are read at scrape time through the
// Watch* methods, and the queue is sampled by RunQueueSampler.
//
// # Metrics
//
// Every metric is per instance (Prometheus adds the instance label); sum
// them over instances for the deployment, except the mediator_queue_* ones,
// which every instance samples from the shared database (take max).
//
//	| metric | type | labels | meaning |
//	| --- | --- | --- | --- |
//	| `mediator_inbound_messages_total` | counter | `type`, `transport`, `outcome` | Inbound DIDComm messages once handled. `type` is the message type key `protocol/major/name` (e.g. `routing/1/forward`) for the types the mediator handles, `problem-report` for any problem report, `other` for any other type, `none` when the message could not be read (not for us, does not decrypt, not a message). `transport`: `http`, `ws`. `outcome`: `ok` (handled, including refusals answered with a problem report), `bad_request`, `unknown_recipient` (forward to a key nobody registered), `too_large`, `rate_limited`, `queue_full` (recipient's queue at its hard cap, HTTP 507), `refused` (other 4xx), `timeout` (the handler's deadline passed), `error` (5xx). |
//	| `mediator_forward_accept_seconds` | histogram | | For accepted forwards: from the start of handling the inbound message to the queue insert returning (unpack, parse, route lookup, insert and commit). |
//	| `mediator_queued_to_delivered_seconds` | histogram | `method` | Per message: from being queued (its `created_at`, database clock) to being written to the wallet (this instance's clock). `method`: `delivery` (pickup 2.0 delivery-request), `live` (pickup 2.0 live-mode push), `batch` (pickup 1.0 batch-pickup), `implicit` (raw push on a return-route socket). Written means handed to the socket/HTTP response, not acknowledged. |
//	| `mediator_queue_messages` | gauge | | Messages queued for all wallets (pending and in flight), sampled every 15s. |
//	| `mediator_queue_in_flight_messages` | gauge | | Of those, handed out and awaiting messages-received under an unexpired lease. |
//	| `mediator_queue_oldest_message_age_seconds` | gauge | | Age of the oldest queued message, 0 when the queue is empty (database clock). |
//	| `mediator_queue_sample_errors_total` | counter | | Failed queue samples (the three gauges above keep their last value). |
//	| `mediator_live_sessions` | gauge | `protocol` | Live delivery sessions on this instance: `v2` (pickup 2.0 live mode), `implicit` (return-route socket). |
//	| `mediator_websockets_open` | gauge | | Open DIDComm WebSockets on this instance. |
//	| `mediator_redeliveries_total` | counter | | Messages handed out again (claimed with attempts > 1): unacknowledged before the lease ran out, push failed, socket closed, or instance died. |
//	| `mediator_notification_lag_seconds` | histogram | | Every 15s an instance NOTIFYs a probe on its own wake-up channel; this is the time until its LISTEN connection handled it. Same path as the wake-ups other instances send when they queue for a wallet live here (committed `pg_notify`, then the LISTEN connection), and it waits behind them, so it is the wake-up delay; both ends on this instance's clock. Not observed while LISTEN is down. |
//	| `mediator_notification_probes_sent_total` | counter | | Probes sent; minus `mediator_notification_lag_seconds_count`, probes lost (LISTEN down or far behind). |
//	| `mediator_db_listener_connected` | gauge | | 1 while this instance's LISTEN connection is up; at 0 wake-ups from other instances are lost until it reconnects (the reconcile pass then catches up). |
//	| `mediator_webhook_results_total` | counter | `outcome` | Offline-wallet webhook: `delivered` (2xx), `failed` (gave up: non-retryable status, attempts exhausted, shutdown), `dropped` (buffer full or after shutdown), `retry` (an attempt failed, another follows). |
//	| `mediator_limit_rejections_total` | counter | `limit` | Requests, messages or sockets refused by a configured limit: `message_size` (HTTP 413 / WebSocket close 1009), `max_sockets` (upgrade refused), `ip_rate` (per-IP rate), `connection_rate` (per-connection rate), `queue_hard_cap` (forward refused, HTTP 507), `inflight_bytes` (the instance's budget for messages being received is spent: HTTP 503 / WebSocket close 1013). |
//	| `mediator_queue_soft_cap_exceeded_total` | counter | | Messages queued beyond their connection's soft queue cap (accepted, with a warning in the log). |
//	| `mediator_messages_expired_total` | counter | | Queued messages deleted unread by the message TTL job. |
//	| `mediator_direct_deliveries_total` | counter | `result` | With `--forwarding-strategy direct-then-queue`: direct delivery attempts, `delivered` or `failed` (then queued). |
//	| `mediator_forward_statements_total` | counter | | Statements that queued forwards: concurrent forwards share one multi-row statement and commit (group commit). |
//	| `mediator_forward_statement_rows_total` | counter | | Forwards those statements carried; rate over rate of statements = mean batch size. |
//	| `mediator_db_pool_acquired_connections` | gauge | | pgx pool: connections in use. |
//	| `mediator_db_pool_idle_connections` | gauge | | pgx pool: idle connections. |
//	| `mediator_db_pool_constructing_connections` | gauge | | pgx pool: connections being opened. |
//	| `mediator_db_pool_total_connections` | gauge | | pgx pool: all its connections. |
//	| `mediator_db_pool_max_connections` | gauge | | pgx pool: its size limit. |
//	| `mediator_db_pool_acquires_total` | counter | | pgx pool: connections acquired. |
//	| `mediator_db_pool_acquire_seconds_total` | counter | | pgx pool: total time spent acquiring (rate over rate of acquires = mean wait). |
//	| `mediator_db_pool_empty_acquires_total` | counter | | pgx pool: acquires that had to wait because no connection was idle (pool too small). |
//	| `mediator_db_pool_empty_acquire_wait_seconds_total` | counter | | pgx pool: total time those acquires waited. |
//	| `mediator_db_pool_canceled_acquires_total` | counter | | pgx pool: acquires abandoned by their context. |
//	| `mediator_db_pool_new_connections_total` | counter | | pgx pool: connections opened. |
//	| `mediator_db_pool_max_lifetime_destroys_total` | counter | | pgx pool: connections closed at their maximum lifetime. |
//	| `mediator_db_pool_max_idle_destroys_total` | counter | | pgx pool: connections closed for idling. |
//	| `mediator_ready` | gauge | | 1 when `/readyz` would answer 200 (DIDComm listener serving, database and LISTEN connection healthy), checked at each scrape. |
//	| `mediator_build_info` | gauge | `version` | Always 1; the running version. |
//	| `go_*`, `process_*` | | | Go runtime and process collectors (memory, GC, goroutines, CPU, open file descriptors). |
//
// The LISTEN connection is not from the pool and not in mediator_db_pool_*.
// mediator_db_* exist only with a database, and without one the
// notification probe metrics stay at 0; in memory mode the queue is sampled
// from memory.
package metrics
