// Package heapfloor keeps the Go garbage collector's heap goal at or above a
// floor, the way a JVM's minimum heap does.
//
// With GOGC=100 the collector runs whenever the heap has doubled since the
// last cycle. A mediator's live heap is small (a few MiB when it holds few
// sockets) while it allocates fast (every forward is a request body, a
// decrypted copy and a database parameter), so under load it collected
// some fifty times a second, each cycle scanning every goroutine's stack:
// a fifth of its CPU. Raising GOGC would cut that, but also multiply the
// heap of an instance that holds tens of thousands of sockets. A floor does
// neither: below it the collector waits for the floor, above it GOGC rules
// as before. After every cycle the GC percent is set to what makes the next
// goal max(floor, the goal GOGC gives); GOMEMLIMIT, if set, still caps it.
package heapfloor

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// heapMinimum is the runtime's smallest heap goal at GOGC=100; it scales
// with the percent like the rest of the goal (defaultHeapMinimum in
// runtime/mgcpacer.go).
const heapMinimum = 4 << 20

// Floor keeps the heap goal at or above a size until Stop.
type Floor struct {
	floor   uint64
	base    int // the GC percent in force at Start (GOGC)
	percent int // the GC percent last set; touched by the cleanup goroutine only
	stopped atomic.Bool
	samples []metrics.Sample
}

// Start keeps the heap goal at or above floor bytes from the next garbage
// collection on. With floor 0, or with the collector off (GOGC=off), it
// does nothing. Stop undoes it.
func Start(floor uint64, log *slog.Logger) *Floor {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	f := &Floor{floor: floor, base: base, percent: base, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}}
	if floor == 0 || base < 0 {
		f.stopped.Store(true)
		return f
	}
	log.Info("garbage collector heap floor", "floor_bytes", floor, "gogc", base)
	f.arm()
	return f
}

// Stop restores the GC percent in force at Start.
func (f *Floor) Stop() {
	if f.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(f.base)
}

// gcSentinel is allocated and dropped to learn when a cycle has run: its
// cleanup runs after the cycle that found it unreachable. It holds a
// pointer so that it is not batched with other tiny objects, whose block
// could stay reachable for a while.
type gcSentinel struct{ _ *byte }

func (f *Floor) arm() {
	runtime.AddCleanup(&gcSentinel{}, (*Floor).afterGC, f)
}

// afterGC runs on the runtime's cleanup goroutine after each cycle.
func (f *Floor) afterGC() {
	if f.stopped.Load() {
		return
	}
	metrics.Read(f.samples)
	live, stacks, globals := f.samples[0].Value.Uint64(), f.samples[1].Value.Uint64(), f.samples[2].Value.Uint64()
	if p := percentFor(f.floor, live, live+stacks+globals, f.base); p != f.percent {
		f.percent = p
		debug.SetGCPercent(p)
	}
	f.arm()
}

// percentFor is the GC percent whose heap goal is at least floor, and never
// below base. Since Go 1.18 the runtime's goal at percent p is
//
//	max(live + scannable × p/100, heapMinimum × p/100)
//
// scannable being the live heap plus goroutine stacks and globals; the
// smaller of the two percents that reach the floor is the one that lands on
// it (a tiny heap reaches it through the minimum).
func percentFor(floor, live, scannable uint64, base int) int {
	if live >= floor {
		return base
	}
	p := ceilDiv(floor*100, heapMinimum)
	if scannable > 0 {
		p = min(p, ceilDiv((floor-live)*100, scannable))
	}
	return max(int(p), base)
}

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }
