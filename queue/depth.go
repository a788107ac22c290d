package queue

import "time"

// Depth describes the whole queue, every connection's messages together:
// what monitoring samples.
type Depth struct {
	// Messages is the number of queued messages, pending or in flight.
	Messages int64
	// InFlight is the number of those handed out and waiting for their
	// acknowledgement under a lease that has not run out.
	InFlight int64
	// OldestAge is the age of the oldest queued message; 0 when empty.
	OldestAge time.Duration
}
