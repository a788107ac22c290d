package transport

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// readMessage's buffer follows the bytes received, not the size announced,
// and takes from the budget only beyond freeMessageBytes.
func TestReadMessageGrowsWithBytesReceived(t *testing.T) {
	s := &Server{inFlight: byteBudget{max: 1 << 30}}
	const limit = 5 << 20

	// Announces 5 MiB, sends 10 bytes (then the connection breaks).
	lying := io.MultiReader(bytes.NewReader(make([]byte, 10)), iotest.ErrReader(io.ErrUnexpectedEOF))
	_, held, err := s.readMessage(lying, limit, limit)
	if !errors.Is(err, io.ErrUnexpectedEOF) || held != 0 {
		t.Errorf("lying body: err %v held %d, want ErrUnexpectedEOF and 0", err, held)
	}

	for _, tc := range []struct {
		name string
		size int
		hint int64
	}{
		{"small, announced", 1000, 1000},
		{"small, chunked", 1000, -1},
		{"free size, chunked", freeMessageBytes, -1},
		{"1 MiB, announced", 1 << 20, 1 << 20},
		{"1 MiB+1, chunked", 1<<20 + 1, -1},
		{"at the limit, chunked", limit, -1},
		{"at the limit, announced", limit, limit},
		{"longer than announced", 3000, 1000},
	} {
		msg := bytes.Repeat([]byte{'m'}, tc.size)
		got, held, err := s.readMessage(iotest.HalfReader(bytes.NewReader(msg)), tc.hint, limit)
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("%s: err %v, %d bytes", tc.name, err, len(got))
			continue
		}
		if c := cap(got); c > max(2*tc.size, firstReadBytes)+1 {
			t.Errorf("%s: buffer of %d bytes for %d received", tc.name, c, tc.size)
		}
		if want := max(int64(cap(got))-freeMessageBytes, 0); held != want {
			t.Errorf("%s: held %d, want %d", tc.name, held, want)
		}
		s.inFlight.give(held)
	}

	if _, held, err := s.readMessage(bytes.NewReader(make([]byte, limit+1)), -1, limit); !errors.Is(err, errTooBig) {
		t.Errorf("over the limit: err %v", err)
	} else {
		s.inFlight.give(held)
	}
	if n := s.inFlight.inUse(); n != 0 {
		t.Errorf("budget in use after everything was given back: %d", n)
	}

	// A budget too small for the message.
	small := &Server{inFlight: byteBudget{max: 100 << 10}}
	if _, held, err := small.readMessage(bytes.NewReader(make([]byte, 300<<10)), -1, limit); !errors.Is(err, errInFlight) {
		t.Errorf("over the budget: err %v", err)
	} else if small.inFlight.give(held); small.inFlight.inUse() != 0 {
		t.Errorf("budget in use after give: %d", small.inFlight.inUse())
	}
}

func TestDefaultInFlightBytes(t *testing.T) {
	for _, tc := range []struct{ maxMsg, want int64 }{
		{5 << 20, 128 << 20},
		{1 << 20, 64 << 20},
		{64 << 10, 4 << 20},
		{100 << 20, 400 << 20},
		{1 << 62, 4 << 40},
	} {
		if got := defaultInFlightBytes(tc.maxMsg); got != tc.want {
			t.Errorf("defaultInFlightBytes(%d) = %d, want %d", tc.maxMsg, got, tc.want)
		}
	}
}
