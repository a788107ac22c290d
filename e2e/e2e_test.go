// Package e2e runs the real mediator binary on a fresh PostgreSQL database
// and plays wallets against it over HTTP and WebSocket.
package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/envelope"
	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/internal/wallet"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// mediatorBinary builds cmd/mediator once per test run.
func mediatorBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mediator-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "mediator")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, "../cmd/mediator").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// instance is one running `mediator serve`.
type instance struct {
	base  string
	admin string // the admin listener: /metrics, /healthz, /readyz
	cmd   *exec.Cmd
	logs  *syncBuffer
	done  chan struct{}
}

// kill ends the process with SIGKILL, as a crash would.
func (i *instance) kill(t *testing.T) {
	t.Helper()
	if err := i.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-i.done
}

// wsURL is the instance's WebSocket endpoint.
func (i *instance) wsURL() string { return "ws" + strings.TrimPrefix(i.base, "http") }

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a process's output. The buffer is a field, not
// embedded, so that io.Copy cannot reach bytes.Buffer.ReadFrom around the lock.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// String returns what was written so far; safe while the process writes.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// startMediator runs the binary with env and waits for /healthz.
func startMediator(t *testing.T, env ...string) *instance {
	t.Helper()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command(mediatorBinary(t), "serve", "--log-level", "debug")
	adminPort := freePort(t)
	cmd.Env = append(os.Environ(), append([]string{fmt.Sprintf("MEDIATOR_ADMIN_LISTEN=127.0.0.1:%d", adminPort)},
		append(env, fmt.Sprintf("MEDIATOR_LISTEN=127.0.0.1:%d", port))...)...)
	logs := &syncBuffer{}
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
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("mediator log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return &instance{base: base, admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort), cmd: cmd, logs: logs, done: done}
			}
		}
		select {
		case <-done:
			t.Fatalf("mediator exited before becoming healthy:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mediator not healthy after 20s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getInvitation(t *testing.T, base string) wallet.Invitation {
	t.Helper()
	resp, err := http.Get(base + "/invitation")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /invitation: %d %s", resp.StatusCode, body)
	}
	inv, err := wallet.ParseInvitationURL(string(body))
	if err != nil {
		t.Fatalf("parse invitation %q: %v", body, err)
	}
	return inv
}

func masterKeyEnv() string {
	return "MEDIATOR_MASTER_KEY=" + strings.Repeat("ab", 32)
}

// connectedRecipient makes a wallet that connected, got a grant and
// registered its own key.
func connectedRecipient(ctx context.Context, t *testing.T, inv wallet.Invitation) *wallet.Wallet {
	t.Helper()
	w, err := wallet.New("e2e recipient")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Connect(ctx, inv); err != nil {
		t.Fatalf("connect: %v", err)
	}
	if err := w.RequestMediation(ctx); err != nil {
		t.Fatalf("mediation: %v", err)
	}
	didKey, err := diddoc.DIDKeyFromVerkey(w.Verkey())
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.AddKey(ctx, didKey)
	if err != nil || res != "success" {
		t.Fatalf("keylist add: %q %v", res, err)
	}
	return w
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

// openInner decrypts a delivered envelope with the recipient's key.
func openInner(t *testing.T, w *wallet.Wallet, payload []byte) []byte {
	t.Helper()
	un, err := envelope.Unpack(payload, func(verkey string) (ed25519.PrivateKey, bool) {
		return w.Key, verkey == w.Verkey()
	})
	if err != nil {
		t.Fatalf("open delivered message: %v", err)
	}
	return un.Plaintext
}

func queueRows(t *testing.T, dbURL string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM queued_message").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWalletPicksUpForwardsOverHTTPAndWebSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbURL := pgtest.NewDatabase(t)
	m := startMediator(t, "MEDIATOR_DATABASE_URL="+dbURL, masterKeyEnv())
	inv := getInvitation(t, m.base)
	recipient := connectedRecipient(ctx, t, inv)

	// Registering the same key again changes nothing.
	if res, err := recipient.AddKey(ctx, recipient.Verkey()); err != nil || res != "no_change" {
		t.Fatalf("second add (base58 form): %q %v", res, err)
	}
	if len(recipient.RoutingKeys) != 1 || recipient.GrantEndpoint != m.base {
		t.Fatalf("grant: endpoint %q routing keys %v", recipient.GrantEndpoint, recipient.RoutingKeys)
	}

	sender, err := wallet.NewSender()
	if err != nil {
		t.Fatal(err)
	}
	plaintexts := [][]byte{
		[]byte(`{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"` + uuid.NewString() + `","content":"one"}`),
		[]byte(`{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"` + uuid.NewString() + `","content":"two"}`),
	}
	var inners [][]byte
	for _, p := range plaintexts {
		inner, err := sender.Forward(ctx, recipient.GrantEndpoint, recipient.RoutingKeys[0], recipient.Verkey(), p)
		if err != nil {
			t.Fatalf("forward: %v", err)
		}
		inners = append(inners, inner)
	}

	// A forward for a key nobody registered is refused.
	stranger, _ := wallet.New("stranger")
	_, err = sender.Forward(ctx, recipient.GrantEndpoint, recipient.RoutingKeys[0], stranger.Verkey(), plaintexts[0])
	var se *wallet.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotFound {
		t.Fatalf("forward to unknown key: got %v, want HTTP 404", err)
	}

	// Pickup v2 over HTTP, oldest first, one at a time to exercise the loop.
	got, err := recipient.PickupHTTP(ctx, 1)
	if err != nil {
		t.Fatalf("pickup over HTTP: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("picked up %d messages over HTTP, want 2", len(got))
	}
	for i, d := range got {
		if !jsonEqual(t, d.Payload, inners[i]) {
			t.Errorf("message %d: delivered envelope differs from the one sent", i)
		}
		if plain := openInner(t, recipient, d.Payload); !bytes.Equal(plain, plaintexts[i]) {
			t.Errorf("message %d: plaintext %q, want %q", i, plain, plaintexts[i])
		}
	}
	if n := queueRows(t, dbURL); n != 0 {
		t.Fatalf("queue holds %d rows after acknowledgement, want 0", n)
	}

	// Pickup v2 over WebSocket.
	third := []byte(`{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"` + uuid.NewString() + `","content":"three"}`)
	if _, err := sender.Forward(ctx, recipient.GrantEndpoint, recipient.RoutingKeys[0], recipient.Verkey(), third); err != nil {
		t.Fatal(err)
	}
	sock, err := recipient.DialWS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if err := sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/status-request", "@id": uuid.NewString()}); err != nil {
		t.Fatal(err)
	}
	status := receiveType(t, sock, "messagepickup/2/status")
	var st struct {
		MessageCount int `json:"message_count"`
	}
	_ = status.Decode(&st)
	if st.MessageCount != 1 {
		t.Fatalf("status over WS: message_count %d, want 1", st.MessageCount)
	}
	reqID := uuid.NewString()
	if err := sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/delivery-request", "@id": reqID, "limit": 10}); err != nil {
		t.Fatal(err)
	}
	delivery := receiveType(t, sock, "messagepickup/2/delivery")
	if delivery.ThreadID() != reqID {
		t.Errorf("delivery thid %q, want %q", delivery.ThreadID(), reqID)
	}
	items, err := wallet.ParseDelivery(delivery)
	if err != nil || len(items) != 1 {
		t.Fatalf("delivery over WS: %d items, %v", len(items), err)
	}
	if plain := openInner(t, recipient, items[0].Payload); !bytes.Equal(plain, third) {
		t.Fatalf("WS plaintext %q, want %q", plain, third)
	}
	if err := sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/messages-received", "@id": uuid.NewString(),
		"message_id_list": []string{items[0].ID}}); err != nil {
		t.Fatal(err)
	}
	status = receiveType(t, sock, "messagepickup/2/status")
	_ = status.Decode(&st)
	if st.MessageCount != 0 {
		t.Fatalf("status after ack: message_count %d, want 0", st.MessageCount)
	}
	if n := queueRows(t, dbURL); n != 0 {
		t.Fatalf("queue holds %d rows at the end, want 0", n)
	}
}

func TestLiveModePushesForwardsOnTheSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL := pgtest.NewDatabase(t)
	m := startMediator(t, "MEDIATOR_DATABASE_URL="+dbURL, masterKeyEnv())
	recipient := connectedRecipient(ctx, t, getInvitation(t, m.base))

	// Over HTTP live mode is refused with a problem report.
	reply, err := recipient.Request(ctx, map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/live-delivery-change",
		"@id": uuid.NewString(), "live_delivery": true})
	if err != nil {
		t.Fatal(err)
	}
	if reply == nil || !reply.MsgType.IsProblemReport() || !strings.Contains(string(reply.Raw), "e.m.live-mode-not-supported") {
		t.Fatalf("live mode over HTTP: got %v", reply)
	}

	sock, err := recipient.DialWS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if err := sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/live-delivery-change", "@id": uuid.NewString(), "live_delivery": true}); err != nil {
		t.Fatal(err)
	}
	st := receiveType(t, sock, "messagepickup/2/status")
	var status struct {
		LiveDelivery *bool `json:"live_delivery"`
	}
	_ = st.Decode(&status)
	if status.LiveDelivery == nil || !*status.LiveDelivery {
		t.Fatalf("status after live-delivery-change: %s", st.Raw)
	}
	sender, _ := wallet.NewSender()
	plain := []byte(`{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"` + uuid.NewString() + `","content":"live"}`)
	if _, err := sender.Forward(ctx, recipient.GrantEndpoint, recipient.RoutingKeys[0], recipient.Verkey(), plain); err != nil {
		t.Fatal(err)
	}
	d := receiveType(t, sock, "messagepickup/2/delivery")
	items, err := wallet.ParseDelivery(d)
	if err != nil || len(items) != 1 {
		t.Fatalf("live delivery: %d items %v", len(items), err)
	}
	if got := openInner(t, recipient, items[0].Payload); !bytes.Equal(got, plain) {
		t.Fatalf("live plaintext %q, want %q", got, plain)
	}
	if n := queueRows(t, dbURL); n != 1 {
		t.Fatalf("before messages-received the queue holds %d rows, want 1", n)
	}
	if err := sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/messages-received", "@id": uuid.NewString(),
		"message_id_list": []string{items[0].ID}}); err != nil {
		t.Fatal(err)
	}
	receiveType(t, sock, "messagepickup/2/status")
	if n := queueRows(t, dbURL); n != 0 {
		t.Fatalf("after messages-received the queue holds %d rows, want 0", n)
	}
}

func TestEmbeddedDefaultServesWithoutDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := startMediator(t, "MEDIATOR_DATABASE_URL=", "MEDIATOR_MASTER_KEY=")
	recipient := connectedRecipient(ctx, t, getInvitation(t, m.base))
	sender, _ := wallet.NewSender()
	plain := []byte(`{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"x1234567","content":"mem"}`)
	if _, err := sender.Forward(ctx, recipient.GrantEndpoint, recipient.RoutingKeys[0], recipient.Verkey(), plain); err != nil {
		t.Fatal(err)
	}
	got, err := recipient.PickupHTTP(ctx, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("pickup: %d %v", len(got), err)
	}
	if p := openInner(t, recipient, got[0].Payload); !bytes.Equal(p, plain) {
		t.Fatalf("plaintext %q", p)
	}
}

// receiveType reads socket messages until one of the wanted type arrives.
func receiveType(t *testing.T, s *wallet.Socket, key string) *didcomm.Message {
	t.Helper()
	for i := 0; i < 10; i++ {
		m, err := s.Receive(15 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s: %v", key, err)
		}
		if m.MsgType.Key() == key {
			return m
		}
		t.Logf("skipping %s while waiting for %s", m.Type, key)
	}
	t.Fatalf("no %s in 10 messages", key)
	return nil
}
