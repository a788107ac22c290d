package mediator_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/envelope"
	"github.com/openmediator/mediator/keyring"
	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queue"
	"github.com/openmediator/mediator/record"
	"github.com/openmediator/mediator/transport"
)

// ---- fake transport session ----

// fakeSession records what the agent sends on it and can be made to fail.
type fakeSession struct {
	id   string
	kind transport.Kind
	done chan struct{}
	once sync.Once

	mu   sync.Mutex
	sent [][]byte
	fail error
}

func newSession(kind transport.Kind) *fakeSession {
	return &fakeSession{id: uuid.NewString(), kind: kind, done: make(chan struct{})}
}

func (s *fakeSession) ID() string            { return s.id }
func (s *fakeSession) Kind() transport.Kind  { return s.kind }
func (s *fakeSession) RemoteAddr() string    { return "192.0.2.7:4711" }
func (s *fakeSession) Done() <-chan struct{} { return s.done }
func (s *fakeSession) Close()                { s.once.Do(func() { close(s.done) }) }

func (s *fakeSession) Send(_ context.Context, packed []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.sent = append(s.sent, append([]byte(nil), packed...))
	return nil
}

func (s *fakeSession) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

// drain returns and forgets everything sent so far.
func (s *fakeSession) drain() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sent
	s.sent = nil
	return out
}

func (s *fakeSession) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

var _ transport.Session = (*fakeSession)(nil)

// waitDrain waits until at least n messages were sent (pushes may run in
// the background), then returns and forgets everything sent.
func (s *fakeSession) waitDrain(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages sent within 5s, want %d", s.count(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return s.drain()
}

// ---- the agent under test ----

type env struct {
	store  *memstore.Memory
	keys   *keyring.Keyring
	pickup *pickup.Service
	agent  *mediator.Agent
	cfg    mediator.Config
}

var defaultEndpoints = []string{"https://mediator.example/didcomm", "wss://mediator.example/ws"}

func newEnv(t *testing.T, mutate ...func(*mediator.Config)) *env {
	t.Helper()
	ctx := context.Background()
	store := memstore.New(memstore.Options{})
	master := make([]byte, keyring.MasterKeySize)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(store, master)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	pk := pickup.New(store, pickup.Options{Instance: "test", Logger: logger})
	cfg := mediator.Config{
		Endpoints: append([]string(nil), defaultEndpoints...),
		Label:     "Test Mediator",
		AutoGrant: true,
		Logger:    logger,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := mediator.New(ctx, cfg, store, store, kr, pk)
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: store, keys: kr, pickup: pk, agent: a, cfg: cfg}
}

func (e *env) invitationPub(t *testing.T) ed25519.PublicKey {
	return pubOf(t, e.agent.InvitationVerkey())
}
func (e *env) routingPub(t *testing.T) ed25519.PublicKey { return pubOf(t, e.agent.RoutingVerkey()) }

func pubOf(t *testing.T, verkey string) ed25519.PublicKey {
	t.Helper()
	b, err := base58.Decode(verkey)
	if err != nil || len(b) != ed25519.PublicKeySize {
		t.Fatalf("verkey %q: %v", verkey, err)
	}
	return ed25519.PublicKey(b)
}

func didKeyOf(t *testing.T, verkey string) string {
	t.Helper()
	dk, err := diddoc.DIDKeyFromVerkey(verkey)
	if err != nil {
		t.Fatal(err)
	}
	return dk
}

// handle calls HandleInbound, turning a panic into a test failure.
func (e *env) handle(t *testing.T, packed []byte, s *fakeSession) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("HandleInbound panicked: %v", r)
		}
	}()
	var sess transport.Session
	if s != nil {
		sess = s
	}
	return e.agent.HandleInbound(context.Background(), packed, sess)
}

// stats is the claimable queue of a connection.
func (e *env) stats(t *testing.T, connID string) queue.Stats {
	t.Helper()
	st, err := e.store.Stats(context.Background(), queue.Filter{ConnectionID: connID})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (e *env) claimAll(t *testing.T, connID string) []queue.Message {
	t.Helper()
	msgs, err := e.store.Claim(context.Background(), queue.Filter{ConnectionID: connID}, 100, queue.Holder{Instance: "test-claim"})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func (e *env) conn(t *testing.T, id string) record.Connection {
	t.Helper()
	c, err := e.store.ConnectionByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ---- a wallet talking to the agent ----

type peer struct {
	key    ed25519.PrivateKey
	verkey string
	did    string
	to     ed25519.PublicKey // the mediator key messages are packed to
	connID string
	ourKey string // the mediator's base58 key on the connection
}

func newPeer(t *testing.T) *peer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	did, err := diddoc.NewPeerDID2(pub, []string{"didcomm:transport/queue"})
	if err != nil {
		t.Fatal(err)
	}
	return &peer{key: priv, verkey: base58.Encode(pub), did: did}
}

func (p *peer) pub() ed25519.PublicKey { return p.key.Public().(ed25519.PublicKey) }

func (p *peer) pack(t *testing.T, msg any) []byte {
	t.Helper()
	plain, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	packed, err := envelope.PackAuthcrypt(plain, p.key, p.to)
	if err != nil {
		t.Fatal(err)
	}
	return packed
}

// reply is one message the agent sent to a peer.
type reply struct {
	msg    *didcomm.Message
	fields map[string]json.RawMessage
	sender string // base58 key the agent packed it from
}

func (p *peer) open(t *testing.T, packed []byte) reply {
	t.Helper()
	un, err := envelope.Unpack(packed, func(vk string) (ed25519.PrivateKey, bool) { return p.key, vk == p.verkey })
	if err != nil {
		t.Fatalf("open reply: %v", err)
	}
	m, err := didcomm.Parse(un.Plaintext)
	if err != nil {
		t.Fatalf("parse reply %s: %v", un.Plaintext, err)
	}
	var f map[string]json.RawMessage
	if err := json.Unmarshal(un.Plaintext, &f); err != nil {
		t.Fatal(err)
	}
	return reply{msg: m, fields: f, sender: un.SenderKey}
}

func (r reply) field(t *testing.T, name string) string {
	t.Helper()
	return string(r.fields[name])
}

func (r reply) str(t *testing.T, name string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(r.fields[name], &s); err != nil {
		t.Fatalf("%s = %s is not a string", name, r.fields[name])
	}
	return s
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.msg.Raw, v); err != nil {
		t.Fatalf("decode %s: %v", r.msg.Raw, err)
	}
}

func (r reply) problemCode(t *testing.T) string {
	t.Helper()
	var d struct {
		Description struct {
			Code string `json:"code"`
		} `json:"description"`
	}
	r.decode(t, &d)
	return d.Description.Code
}

// expectType fails unless the reply has this exact @type.
func (r reply) expectType(t *testing.T, want string) {
	t.Helper()
	if r.msg.Type != want {
		t.Fatalf("reply @type = %q, want %q: %s", r.msg.Type, want, r.msg.Raw)
	}
	if len(r.msg.ID) != 36 {
		t.Fatalf("reply @id = %q, want a UUID", r.msg.ID)
	}
}

// expectThread fails unless ~thread is exactly this JSON.
func (r reply) expectThread(t *testing.T, want string) {
	t.Helper()
	if got := r.field(t, "~thread"); got != want {
		t.Fatalf("reply ~thread = %s, want %s", got, want)
	}
}

func thid(id string) string { return fmt.Sprintf(`{"thid":%q}`, id) }

func withReturnRoute(msg map[string]any, route string) map[string]any {
	if route != "" {
		msg["~transport"] = map[string]any{"return_route": route}
	}
	return msg
}

// send packs msg from p and hands it to the agent on s.
func (e *env) send(t *testing.T, p *peer, msg map[string]any, s *fakeSession) error {
	t.Helper()
	return e.handle(t, p.pack(t, msg), s)
}

// request sends msg with return_route all over a fresh HTTP session and
// returns the single reply.
func (e *env) request(t *testing.T, p *peer, msg map[string]any) reply {
	t.Helper()
	s := newSession(transport.KindHTTP)
	if err := e.send(t, p, withReturnRoute(msg, "all"), s); err != nil {
		t.Fatalf("HandleInbound(%v): %v", msg["@type"], err)
	}
	sent := s.drain()
	if len(sent) != 1 {
		t.Fatalf("%v: %d replies sent, want 1", msg["@type"], len(sent))
	}
	return p.open(t, sent[0])
}

// requestNone sends msg with return_route all and requires that nothing is
// sent back and nothing fails.
func (e *env) requestNone(t *testing.T, p *peer, msg map[string]any) {
	t.Helper()
	s := newSession(transport.KindHTTP)
	if err := e.send(t, p, withReturnRoute(msg, "all"), s); err != nil {
		t.Fatalf("HandleInbound(%v): %v", msg["@type"], err)
	}
	if n := s.count(); n != 0 {
		t.Fatalf("%v: %d replies sent, want none", msg["@type"], n)
	}
}

// connect runs a real DID Exchange 1.1 (did:peer:2) through HandleInbound,
// as internal/wallet.Connect does, and completes it.
func (e *env) connect(t *testing.T) *peer {
	t.Helper()
	p := newPeer(t)
	p.to = e.invitationPub(t)
	reqID := uuid.NewString()
	r := e.request(t, p, map[string]any{
		"@type": "https://didcomm.org/didexchange/1.1/request", "@id": reqID,
		"~thread": map[string]any{"pthid": e.agent.Invitation().ID},
		"label":   "wallet", "did": p.did,
	})
	r.expectType(t, "https://didcomm.org/didexchange/1.1/response")
	res, err := diddoc.ResolvePeerDID(r.str(t, "did"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.ourKey = res.RecipientKeys[0]
	p.to = pubOf(t, p.ourKey)
	e.requestNone(t, p, map[string]any{
		"@type": "https://didcomm.org/didexchange/1.1/complete", "@id": uuid.NewString(),
		"~thread": map[string]any{"thid": reqID, "pthid": e.agent.Invitation().ID},
	})
	c, err := e.store.ConnectionByKeys(context.Background(), p.ourKey, p.verkey)
	if err != nil {
		t.Fatal(err)
	}
	p.connID = c.ID
	return p
}

// insertConnection makes a connection without a handshake: a fresh
// connection key from the keyring and a stored record.
func (e *env) insertConnection(t *testing.T, mediation record.MediationState) *peer {
	t.Helper()
	ctx := context.Background()
	p := newPeer(t)
	k, err := e.keys.NewKey(ctx, record.PurposeConnection)
	if err != nil {
		t.Fatal(err)
	}
	p.ourKey = keyring.Verkey(k.Public().(ed25519.PublicKey))
	p.to = k.Public().(ed25519.PublicKey)
	p.connID = uuid.NewString()
	err = e.store.InsertConnection(ctx, record.Connection{
		ID: p.connID, State: record.StateCompleted, Protocol: "https://didcomm.org/didexchange/1.1",
		OurDID: "did:peer:2.test", OurKey: p.ourKey, TheirDID: p.did, TheirKey: p.verkey,
		TheirEndpoint: "didcomm:transport/queue", Mediation: mediation,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// grant connects and obtains mediation.
func (e *env) grant(t *testing.T) *peer {
	t.Helper()
	p := e.connect(t)
	r := e.request(t, p, map[string]any{
		"@type": "https://didcomm.org/coordinate-mediation/1.0/mediate-request", "@id": uuid.NewString(),
	})
	r.expectType(t, "https://didcomm.org/coordinate-mediation/1.0/mediate-grant")
	return p
}

type updated struct {
	RecipientKey string `json:"recipient_key"`
	Action       string `json:"action"`
	Result       string `json:"result"`
}

// keylistUpdate sends one keylist-update and returns the results.
func (e *env) keylistUpdate(t *testing.T, p *peer, updates ...[2]string) []updated {
	t.Helper()
	list := []map[string]string{}
	for _, u := range updates {
		list = append(list, map[string]string{"recipient_key": u[0], "action": u[1]})
	}
	id := uuid.NewString()
	r := e.request(t, p, map[string]any{
		"@type": "https://didcomm.org/coordinate-mediation/1.0/keylist-update", "@id": id, "updates": list,
	})
	r.expectType(t, "https://didcomm.org/coordinate-mediation/1.0/keylist-update-response")
	r.expectThread(t, thid(id))
	var resp struct {
		Updated []updated `json:"updated"`
	}
	r.decode(t, &resp)
	if resp.Updated == nil {
		t.Fatalf("updated is %s, want an array", r.fields["updated"])
	}
	return resp.Updated
}

// newVerkey is a fresh Ed25519 key, base58, with its private key.
func newVerkey(t *testing.T) (string, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base58.Encode(pub), priv
}

// httpStatus extracts HTTPStatus() from an error chain (0 if none).
func httpStatus(err error) int {
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		return hs.HTTPStatus()
	}
	return 0
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func sortedKeys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
