package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrQueueFull is returned by the enqueue methods when the connection
// already holds Caps.Hard messages. Nothing is queued and nothing already
// queued is touched.
var ErrQueueFull = errors.New("queue: the connection's queue is full")

// Caps bound one connection's queue (pending and in-flight messages
// together). Zero disables a cap.
//
// Message number k of a connection (counting what is queued when it
// arrives, plus one) is queued if k <= Hard and flagged OverSoftCap if
// k > Soft. Both stores check the cap in the enqueue itself; under
// concurrent enqueues for the same connection, PostgreSQL may let the queue
// exceed Hard by at most the number of those concurrent enqueues minus one
// (each counts what was committed when it started). Enqueues of a
// connection beyond that are refused, so the overshoot cannot grow.
type Caps struct {
	Soft int
	Hard int
}

// Validate reports caps that make no sense.
func (c Caps) Validate() error {
	switch {
	case c.Soft < 0 || c.Hard < 0:
		return fmt.Errorf("queue caps: negative cap (soft %d, hard %d)", c.Soft, c.Hard)
	case c.Hard > 0 && c.Soft > c.Hard:
		return fmt.Errorf("queue caps: soft cap %d is above hard cap %d; it would never be reached", c.Soft, c.Hard)
	}
	return nil
}

// CountLimit is how far an enqueue counts the connection's queue: the
// larger cap (0: no counting at all).
func (c Caps) CountLimit() int { return max(c.Soft, c.Hard, 0) }

// Full reports whether a connection holding depth messages (counted up to
// CountLimit) may take no more.
func (c Caps) Full(depth int) bool { return c.Hard > 0 && depth >= c.Hard }

// OverSoft reports whether the message queued after depth others is beyond
// the soft cap.
func (c Caps) OverSoft(depth int) bool { return c.Soft > 0 && depth >= c.Soft }

// Default expiry settings.
const (
	DefaultExpireEvery = time.Minute
	DefaultExpireBatch = 1000
)

// ExpiryOptions configure a store's RunExpiry: the periodic removal of
// messages that waited longer than TTL for their recipient.
type ExpiryOptions struct {
	// TTL is how long a message may wait; 0 disables expiry (RunExpiry
	// returns at once). A message in flight under a lease that has not run
	// out is never removed, however old: it is being delivered right now.
	TTL time.Duration
	// Every is the interval between passes (default DefaultExpireEvery, and
	// never more than TTL).
	Every time.Duration
	// Batch bounds the rows one delete statement removes (default
	// DefaultExpireBatch): a pass runs as many statements as needed, each a
	// short transaction.
	Batch int
	// OnExpired, when set, is called after each pass that removed messages,
	// with how many (for metrics). It should return promptly.
	OnExpired func(n int)
	// Logger receives a line per pass that removed messages, and errors
	// (default slog.Default()).
	Logger *slog.Logger
}

// ExpireFunc deletes, in statements of at most batch rows, the messages
// queued longer than ttl ago, except those in flight under a lease that
// has not run out, and returns how many it deleted.
type ExpireFunc func(ctx context.Context, ttl time.Duration, batch int) (int, error)

// RunExpiry calls expire every o.Every until ctx ends, then returns nil.
// The first pass runs at once. Errors are logged and retried at the next
// pass. Stores implement their RunExpiry with it.
func RunExpiry(ctx context.Context, o ExpiryOptions, expire ExpireFunc) error {
	if o.TTL <= 0 {
		return nil
	}
	if o.Every <= 0 {
		o.Every = DefaultExpireEvery
	}
	o.Every = min(o.Every, o.TTL)
	if o.Batch <= 0 {
		o.Batch = DefaultExpireBatch
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		n, err := expire(ctx, o.TTL, o.Batch)
		switch {
		case err != nil && ctx.Err() == nil:
			o.Logger.Warn("queue: expiring old messages failed; retrying at the next pass",
				"err", err, "expired", n, "ttl", o.TTL)
		case n > 0:
			o.Logger.Info("queue: expired messages older than the TTL", "expired", n, "ttl", o.TTL)
		}
		if n > 0 && o.OnExpired != nil {
			o.OnExpired(n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
