package heapfloor

import (
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name                   string
		floor, live, scannable uint64
		base, want             int
	}{
		{"GOGC's goal already above the floor", 64 * mib, 40 * mib, 40 * mib, 100, 100},
		{"live heap above the floor", 64 * mib, 100 * mib, 110 * mib, 100, 100},
		{"live heap at the floor", 64 * mib, 64 * mib, 64 * mib, 100, 100},
		{"small heap: goal raised to the floor", 64 * mib, 4 * mib, 5 * mib, 100, 1200},
		{"exact", 64 * mib, 5 * mib, 5 * mib, 100, 1180},
		{"not exact: rounded up to reach the floor", 64 * mib, 10 * mib, 11 * mib, 100, 491},
		{"tiny heap: the scaled minimum reaches the floor first", 64 * mib, 1 * mib, 3 * mib, 100, 1600},
		{"nothing scannable yet: the minimum alone", 64 * mib, 0, 0, 100, 1600},
		{"rounded up through the minimum", 65*mib + 1, 0, 0, 100, 1626},
		{"floor below the minimum", 1 * mib, 0, 0, 100, 100},
		{"never below GOGC", 64 * mib, 30 * mib, 30 * mib, 200, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentFor(tt.floor, tt.live, tt.scannable, tt.base); got != tt.want {
				t.Errorf("percentFor(%d, %d, %d, %d) = %d, want %d", tt.floor, tt.live, tt.scannable, tt.base, got, tt.want)
			}
		})
	}
}

func heapGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// waitGoal collects until the heap goal satisfies ok: the floor adjusts
// after a cycle, on the runtime's cleanup goroutine.
func waitGoal(t *testing.T, ok func(goal uint64) bool) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		if g := heapGoal(); ok(g) {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("heap goal still %d bytes", heapGoal())
		}
	}
}

func TestFloorRaisesTheHeapGoal(t *testing.T) {
	const floor = 256 << 20 // far above this test binary's heap
	base := gcPercent()
	if base < 0 {
		t.Skip("GOGC=off")
	}
	f := Start(floor, slog.New(slog.NewTextHandler(io.Discard, nil)))
	goal := waitGoal(t, func(g uint64) bool { return g >= floor })
	// Rounding up overshoots by less than a percent of the scannable heap.
	if goal > floor+floor/100 {
		t.Errorf("heap goal %d, want at most %d", goal, floor+floor/100)
	}
	f.Stop()
	if p := gcPercent(); p != base {
		t.Errorf("after Stop GC percent %d, want %d", p, base)
	}
	waitGoal(t, func(g uint64) bool { return g < floor/4 })
	f.Stop() // a second Stop changes nothing
	if p := gcPercent(); p != base {
		t.Errorf("after a second Stop GC percent %d, want %d", p, base)
	}
}

func TestFloorLeavesGOGCOffAlone(t *testing.T) {
	prev := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(prev)
	f := Start(256<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer f.Stop()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if p := gcPercent(); p != -1 {
		t.Errorf("GC percent %d, want -1 (off)", p)
	}
}

func TestZeroFloorDoesNothing(t *testing.T) {
	base := gcPercent()
	f := Start(0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer f.Stop()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if p := gcPercent(); p != base {
		t.Errorf("GC percent %d, want %d", p, base)
	}
}
