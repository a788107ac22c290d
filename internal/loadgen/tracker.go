package loadgen

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Per-message state bits.
const (
	bitAccepted  uint32 = 1 << iota // the mediator answered the forward's POST with 202
	bitDelivered                    // a wallet decrypted it at least once
	bitFailed                       // the POST failed
)

// tracker records what happened to every sequence number. Senders and
// receivers run concurrently and meet only here, so everything they share is
// atomic; the arrays are allocated once, nothing is allocated per message.
type tracker struct {
	start time.Time
	n     int

	state       []atomic.Uint32
	deliveries  []atomic.Int32
	acceptedAt  []atomic.Int64 // ns since start when the POST returned
	deliveredAt []atomic.Int64 // ns since start of the first decryption
	acceptRTT   []atomic.Int64 // POST round trip, ns
	wallet      []atomic.Int32 // index of the wallet the message is for
	target      []atomic.Int32 // index of the target the forward was posted to

	accepted          atomic.Int64
	failed            atomic.Int64
	deliveredUnique   atomic.Int64
	acceptedDelivered atomic.Int64 // both bits set
	lastAccept        atomic.Int64
	lastDeliver       atomic.Int64

	errs errorLog
}

func newTracker(n int, start time.Time) *tracker {
	return &tracker{
		start:       start,
		n:           n,
		state:       make([]atomic.Uint32, n),
		deliveries:  make([]atomic.Int32, n),
		acceptedAt:  make([]atomic.Int64, n),
		deliveredAt: make([]atomic.Int64, n),
		acceptRTT:   make([]atomic.Int64, n),
		wallet:      make([]atomic.Int32, n),
		target:      make([]atomic.Int32, n),
		errs:        errorLog{counts: map[string]int64{}, samples: map[string]string{}},
	}
}

// since is now as nanoseconds since the run started, at least 1 so that 0
// can mean "not yet".
func (t *tracker) since(now time.Time) int64 { return max(1, int64(now.Sub(t.start))) }

func storeMax(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

func (t *tracker) assign(seq, wallet, target int) {
	t.wallet[seq].Store(int32(wallet))
	t.target[seq].Store(int32(target))
}

// accept records a forward the mediator accepted.
func (t *tracker) accept(seq int, sent, done time.Time) {
	at := t.since(done)
	t.acceptedAt[seq].Store(at)
	t.acceptRTT[seq].Store(int64(done.Sub(sent)))
	storeMax(&t.lastAccept, at)
	t.accepted.Add(1)
	if old := t.state[seq].Or(bitAccepted); old&bitDelivered != 0 {
		// Pushed before the POST's answer reached us: possible, the mediator
		// pushes as soon as the row is committed.
		t.acceptedDelivered.Add(1)
	}
}

func (t *tracker) fail(seq int, kind string, err error) {
	t.state[seq].Or(bitFailed)
	t.failed.Add(1)
	t.errs.add(kind, err)
}

// deliver records one decryption of seq by wallet w. It returns an error for
// a sequence number that is out of range or meant for another wallet.
func (t *tracker) deliver(seq int64, w int, now time.Time) error {
	if seq < 0 || seq >= int64(t.n) {
		return fmt.Errorf("sequence number %d out of range", seq)
	}
	if got := int(t.wallet[seq].Load()); got != w {
		return fmt.Errorf("message %d for wallet %d delivered to wallet %d", seq, got, w)
	}
	if t.deliveries[seq].Add(1) > 1 {
		return nil // a duplicate: counted at the end
	}
	at := t.since(now)
	t.deliveredAt[seq].Store(at)
	storeMax(&t.lastDeliver, at)
	t.deliveredUnique.Add(1)
	if old := t.state[seq].Or(bitDelivered); old&bitAccepted != 0 {
		t.acceptedDelivered.Add(1)
	}
	return nil
}

// complete tells whether every accepted forward has been delivered.
func (t *tracker) complete() bool {
	return t.acceptedDelivered.Load() == t.accepted.Load()
}

// errorLog counts errors by kind and keeps the first message of each.
type errorLog struct {
	mu      sync.Mutex
	total   int64
	counts  map[string]int64
	samples map[string]string
}

func (e *errorLog) add(kind string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.total++
	e.counts[kind]++
	if _, ok := e.samples[kind]; !ok && err != nil {
		e.samples[kind] = err.Error()
	}
}

func (e *errorLog) snapshot() (int64, map[string]int64, map[string]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	counts := make(map[string]int64, len(e.counts))
	for k, v := range e.counts {
		counts[k] = v
	}
	samples := make(map[string]string, len(e.samples))
	for k, v := range e.samples {
		samples[k] = v
	}
	return e.total, counts, samples
}

// Percentiles summarises a latency distribution in milliseconds.
type Percentiles struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// percentiles sorts ns in place and summarises it (nearest rank).
func percentiles(ns []int64) Percentiles {
	if len(ns) == 0 {
		return Percentiles{}
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
	var sum float64
	for _, v := range ns {
		sum += float64(v)
	}
	rank := func(p float64) float64 {
		i := int(p*float64(len(ns))+0.5) - 1
		i = min(max(i, 0), len(ns)-1)
		return ms(ns[i])
	}
	return Percentiles{
		Count: len(ns),
		Mean:  round3(sum / float64(len(ns)) / 1e6),
		P50:   rank(0.50),
		P90:   rank(0.90),
		P99:   rank(0.99),
		Max:   ms(ns[len(ns)-1]),
	}
}

func ms(ns int64) float64 { return round3(float64(ns) / 1e6) }

func round3(x float64) float64 {
	if x < 0 {
		return -round3(-x)
	}
	return float64(int64(x*1000+0.5)) / 1000
}
