package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmediator/mediator/internal/loadgen"
	"github.com/openmediator/mediator/internal/pgtest"
)

// envBinary names a prebuilt mediator binary to test against instead of
// building ../mediator.
const envBinary = "MEDIATOR_BINARY"

// mediatorBinary builds cmd/mediator once per test run.
var mediatorBinary = sync.OnceValues(func() (string, error) {
	if p := os.Getenv(envBinary); p != "" {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "mediator-load-test")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mediator")
	out, err := exec.Command("go", "build", "-o", bin, "../mediator").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ../mediator: %v\n%s", err, out)
	}
	return bin, nil
})

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startMediator runs `mediator serve` on a free loopback port with env and
// returns its base URL once /readyz answers.
func startMediator(t *testing.T, env ...string) (base string, pid int) {
	t.Helper()
	bin, err := mediatorBinary()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	base = "http://" + addr
	cmd := exec.Command(bin, "serve", "--log-level", "warn")
	cmd.Env = append(os.Environ(), append(env, "MEDIATOR_LISTEN="+addr, "MEDIATOR_ENDPOINT=", "MEDIATOR_ADMIN_LISTEN=")...)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("mediator log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, cmd.Process.Pid
			}
		}
		select {
		case <-done:
			t.Fatalf("mediator exited before it was ready:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("mediator not ready after 30s:\n%s", logs.String())
		}
	}
}

func postgresMediator(t *testing.T) string {
	t.Helper()
	base, _ := startMediator(t, "MEDIATOR_DATABASE_URL="+pgtest.NewDatabase(t),
		"MEDIATOR_MASTER_KEY="+strings.Repeat("ab", 32))
	return base
}

func memoryMediator(t *testing.T) string {
	t.Helper()
	base, _ := startMediator(t, "MEDIATOR_DATABASE_URL=", "MEDIATOR_MASTER_KEY=")
	return base
}

// runAndCheck runs K=3 wallets, S=2 senders, N=60 messages and requires a
// clean run with every message delivered exactly once.
func runAndCheck(t *testing.T, target string, mode loadgen.Mode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, loadgen.Config{
		Targets:      []string{target},
		Wallets:      3,
		Senders:      2,
		Messages:     60,
		Mode:         mode,
		PollInterval: 50 * time.Millisecond,
		Timeout:      60 * time.Second,
		Settle:       300 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("%s run: %v", mode, err)
	}
	var table strings.Builder
	_ = res.WriteTable(&table)
	t.Logf("%s run:\n%s", mode, table.String())
	if res.Lost != 0 || res.Duplicates != 0 || res.Errors != 0 || res.TimedOut {
		t.Errorf("%s run: lost %d, duplicates %d, errors %d (%v), timed out %v",
			mode, res.Lost, res.Duplicates, res.Errors, res.ErrorSamples, res.TimedOut)
	}
	if res.Accepted != 60 || res.Delivered != 60 {
		t.Errorf("%s run: %d accepted, %d delivered; want 60 and 60", mode, res.Accepted, res.Delivered)
	}
	if res.LatencyMs.Count != 60 || res.AcceptLatencyMs.Count != 60 {
		t.Errorf("%s run: latency samples %d / %d, want 60", mode, res.LatencyMs.Count, res.AcceptLatencyMs.Count)
	}
	if !res.OK() {
		t.Errorf("%s run: not OK", mode)
	}
}

func TestLoadOnPostgres(t *testing.T) {
	target := postgresMediator(t)
	for _, mode := range []loadgen.Mode{loadgen.ModeLive, loadgen.ModePoll} {
		t.Run(string(mode), func(t *testing.T) { runAndCheck(t, target, mode) })
	}
}

func TestLoadInMemory(t *testing.T) {
	target := memoryMediator(t)
	for _, mode := range []loadgen.Mode{loadgen.ModeLive, loadgen.ModePoll} {
		t.Run(string(mode), func(t *testing.T) { runAndCheck(t, target, mode) })
	}
}

// runCLI runs the command in-process and returns its stdout and exit code.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	app := newApp()
	app.Writer = &out
	app.ErrWriter = &out
	err := app.RunContext(context.Background(), append([]string{"mediator-load", "--log-level", "error"}, args...))
	code := 0
	if err != nil {
		code = 2
		if ec, ok := err.(interface{ ExitCode() int }); ok {
			code = ec.ExitCode()
		}
		t.Logf("exit error: %v", err)
	}
	return out.String(), code
}

func TestCommandPrintsOneJSONObject(t *testing.T) {
	target := memoryMediator(t)
	// An invitation URL works as a target as well as a base URL.
	resp, err := http.Get(target + "/invitation")
	if err != nil {
		t.Fatal(err)
	}
	var inv bytes.Buffer
	_, _ = inv.ReadFrom(resp.Body)
	resp.Body.Close()
	out, code := runCLI(t, "--target", strings.TrimSpace(inv.String()), "--wallets", "3", "--senders", "2",
		"--messages", "60", "--mode", "poll", "--poll-interval", "50ms", "--settle", "200ms", "--timeout", "60s", "--json")
	if code != 0 {
		t.Fatalf("exit code %d, output:\n%s", code, out)
	}
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&obj); err != nil {
		t.Fatalf("output is not a JSON object: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value in the output:\n%s", out)
	}
	for _, k := range []string{"forwardsPerSec", "deliveredPerSec", "lost", "duplicates", "errors", "latencyMs", "acceptLatencyMs",
		"wallets", "senders", "mode", "targets", "durationsMs"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	var lat struct{ P50, P99 *float64 }
	if err := json.Unmarshal(obj["latencyMs"], &lat); err != nil || lat.P50 == nil || lat.P99 == nil {
		t.Errorf("latencyMs %s lacks p50/p99 (%v)", obj["latencyMs"], err)
	}
	var delivered int
	_ = json.Unmarshal(obj["delivered"], &delivered)
	if delivered != 60 {
		t.Errorf("delivered %d, want 60", delivered)
	}
}

func TestCommandFailsOnAnUnreachableTarget(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, code := runCLI(t, "--target", "http://"+addr, "--messages", "1", "--timeout", "5s"); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
}

func TestIdleSocketsAndPickupLatency(t *testing.T) {
	base, pid := startMediator(t, "MEDIATOR_DATABASE_URL=", "MEDIATOR_MASTER_KEY=")
	ctx := context.Background()
	idle, err := loadgen.RunIdle(ctx, loadgen.IdleConfig{Targets: []string{base}, Sockets: 30, Wallets: 3,
		Hold: 300 * time.Millisecond, WatchPID: pid, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !idle.OK() || idle.Opened != 30 {
		t.Fatalf("idle sockets: %+v", idle)
	}
	if idle.Held == nil || idle.Held.RSSKiB <= 0 {
		t.Errorf("no memory sample of the mediator: %+v", idle)
	}
	lat, err := loadgen.RunPickupLatency(ctx, loadgen.PickupLatencyConfig{Target: base, Requests: 10, Warmup: 2, Batch: 5, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if lat.Errors != 0 || lat.DeliveryRequestMs.Count != 10 || lat.DeliveryRequestMs.P50 <= 0 {
		t.Fatalf("pickup latency: %+v", lat)
	}
}
