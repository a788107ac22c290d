// Package ratelimit is a keyed token-bucket rate limiter held in memory:
// one bucket per key (a client IP, a connection id), each refilled at Rate
// tokens per second up to Burst.
//
// Buckets live in the process: a cluster of N instances behind a load
// balancer that spreads one client's requests over them lets that client
// through at up to N times the configured rate.
//
// Memory stays bounded: a bucket that has refilled completely is the same
// as no bucket, so idle buckets are dropped by a sweep that runs at most
// every SweepEvery, and the table never holds more than MaxKeys buckets
// (when full even after a sweep, an arbitrary bucket is dropped to make
// room: its key starts again with a full bucket, i.e. the limiter errs on
// the side of letting requests through).
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// DefaultMaxKeys bounds the buckets of a Limiter when Options.MaxKeys is 0
// (about 100 bytes each).
const DefaultMaxKeys = 100_000

// Options tune a Limiter.
type Options struct {
	// Rate is the sustained rate in tokens per second; <= 0 disables the
	// limiter (New returns nil, which allows everything).
	Rate float64
	// Burst is the bucket size: how many tokens a key that was idle may
	// spend at once. Default: Rate rounded up, at least 1.
	Burst int
	// MaxKeys bounds the number of buckets (default DefaultMaxKeys).
	MaxKeys int
	// SweepEvery is the longest time between sweeps of idle buckets
	// (default: the time a bucket takes to refill, within 1s..1m).
	SweepEvery time.Duration
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
}

// Limiter is a set of token buckets by key. A nil *Limiter allows
// everything. It is safe for concurrent use.
type Limiter struct {
	rate, burst float64
	maxKeys     int
	sweepEvery  time.Duration
	now         func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

// bucket holds tokens as of last; tokens may be negative (debt) after
// Reserve.
type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a Limiter, or nil when o.Rate <= 0.
func New(o Options) *Limiter {
	if o.Rate <= 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		return nil
	}
	if o.Burst <= 0 {
		o.Burst = max(1, int(math.Ceil(o.Rate)))
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.SweepEvery <= 0 {
		refill := time.Duration(float64(o.Burst) / o.Rate * float64(time.Second))
		o.SweepEvery = min(max(refill, time.Second), time.Minute)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Limiter{rate: o.Rate, burst: float64(o.Burst), maxKeys: o.MaxKeys,
		sweepEvery: o.SweepEvery, now: o.Now, buckets: map[string]*bucket{}}
}

// Rate returns the limiter's rate in tokens per second (0 for nil).
func (l *Limiter) Rate() float64 {
	if l == nil {
		return 0
	}
	return l.rate
}

// Burst returns the limiter's bucket size (0 for nil).
func (l *Limiter) Burst() int {
	if l == nil {
		return 0
	}
	return int(l.burst)
}

// Allow takes one token from key's bucket. When there is none it takes
// nothing and returns false and how long until one is there.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.bucket(key, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, l.wait(1 - b.tokens)
}

// Reserve takes one token from key's bucket even when there is none,
// running into debt, as long as the debt stays within maxDebt tokens. It
// returns how long the caller should wait before acting (0 when a token was
// there). When the debt would exceed maxDebt it takes nothing and returns
// false: the key is far over its rate.
func (l *Limiter) Reserve(key string, maxDebt float64) (time.Duration, bool) {
	if l == nil {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.bucket(key, now)
	if b.tokens-1 < -maxDebt {
		return 0, false
	}
	b.tokens--
	if b.tokens >= 0 {
		return 0, true
	}
	return l.wait(-b.tokens), true
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// wait is the time needed to refill tokens.
func (l *Limiter) wait(tokens float64) time.Duration {
	return time.Duration(math.Ceil(tokens / l.rate * float64(time.Second)))
}

// bucket returns key's bucket refilled to now, creating it (full) if
// needed; l.mu is held.
func (l *Limiter) bucket(key string, now time.Time) *bucket {
	if now.Sub(l.lastSweep) >= l.sweepEvery {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			// Full: sweep (at most once a second, or a stream of new keys
			// would make every request pay for a full sweep), then drop
			// whatever it takes.
			if now.Sub(l.lastSweep) >= time.Second {
				l.sweep(now)
			}
			for k := range l.buckets {
				if len(l.buckets) < l.maxKeys {
					break
				}
				delete(l.buckets, k) // map order: an arbitrary victim
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
		return b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	return b
}

// sweep drops the buckets that are full again by now; l.mu is held.
func (l *Limiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}
