package loadgen

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/internal/wallet"
)

// Message types the wallets send and expect.
const (
	typeLiveChange       = "https://didcomm.org/messagepickup/2.0/live-delivery-change"
	typeDeliveryRequest  = "https://didcomm.org/messagepickup/2.0/delivery-request"
	typeMessagesReceived = "https://didcomm.org/messagepickup/2.0/messages-received"
	typeStatusRequest    = "https://didcomm.org/messagepickup/2.0/status-request"
	keyDelivery          = "messagepickup/2/delivery"
	keyStatus            = "messagepickup/2/status"
)

// walletState is one simulated wallet: its key, its mediation, and the
// target it talks to.
type walletState struct {
	idx     int
	w       *wallet.Wallet
	pub     ed25519.PublicKey
	verkey  string
	routing ed25519.PublicKey // the mediator's routing key from the grant
	target  int
}

func newWalletState(idx int, client *http.Client) (*walletState, error) {
	w, err := wallet.New(fmt.Sprintf("mediator-load wallet %d", idx))
	if err != nil {
		return nil, err
	}
	if client != nil {
		w.HTTP = client
	}
	ws := &walletState{idx: idx, w: w, pub: w.Key.Public().(ed25519.PublicKey), verkey: w.Verkey()}
	return ws, nil
}

// setup runs invitation → DID Exchange → mediation → keylist-update
// against target t over HTTP.
func (ws *walletState) setup(ctx context.Context, targetIdx int, t Target) error {
	ws.target = targetIdx
	ws.w.Endpoint, ws.w.WSEndpoint = t.HTTP, t.WS
	if err := ws.w.Connect(ctx, t.Invitation); err != nil {
		return fmt.Errorf("DID exchange: %w", err)
	}
	if err := ws.w.RequestMediation(ctx); err != nil {
		return fmt.Errorf("mediation: %w", err)
	}
	didKey, err := diddoc.DIDKeyFromVerkey(ws.verkey)
	if err != nil {
		return err
	}
	res, err := ws.w.AddKey(ctx, didKey)
	if err != nil {
		return fmt.Errorf("keylist-update: %w", err)
	}
	if res != "success" && res != "no_change" {
		return fmt.Errorf("keylist-update: result %q", res)
	}
	if len(ws.w.RoutingKeys) == 0 {
		return errors.New("mediate-grant has no routing key")
	}
	rk, err := base58.Decode(ws.w.RoutingKeys[0])
	if err != nil || len(rk) != ed25519.PublicKeySize {
		return fmt.Errorf("routing key %q: not a base58 Ed25519 key", ws.w.RoutingKeys[0])
	}
	ws.routing = rk
	return nil
}

// setupWallets connects n wallets, spread over the targets, at most
// concurrency at a time. It stops at the first failure.
func setupWallets(ctx context.Context, n, concurrency int, client *http.Client, targets []Target,
	after func(ctx context.Context, ws *walletState) error) ([]*walletState, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := make([]*walletState, n)
	sem := make(chan struct{}, max(concurrency, 1))
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ws, err := newWalletState(i, client)
			if err == nil {
				err = ws.setup(ctx, i%len(targets), targets[i%len(targets)])
			}
			if err == nil && after != nil {
				err = after(ctx, ws)
			}
			if err != nil {
				cancel(fmt.Errorf("loadgen: wallet %d on %s: %w", i, targets[i%len(targets)].URL, err))
				return
			}
			out[i] = ws
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// receiver is the wallet side of a run: it opens delivered messages and
// records them.
type receiver struct {
	run   string
	tr    *tracker
	batch int
}

// open decrypts and records the attachments of one delivery and returns
// the ids to acknowledge (all of them: a broken message must not come back).
func (r *receiver) open(ws *walletState, items []wallet.Delivered) []string {
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.ID)
		un, err := ws.w.Open(it.Payload)
		if err != nil {
			r.tr.errs.add("decrypt", err)
			continue
		}
		now := time.Now()
		lp, err := decodeLoad(un.Plaintext)
		if err != nil {
			r.tr.errs.add("plaintext", err)
			continue
		}
		if lp.Load.Run != r.run {
			r.tr.errs.add("foreign-message", fmt.Errorf("wallet %d got a message of run %q", ws.idx, lp.Load.Run))
			continue
		}
		if err := r.tr.deliver(lp.Load.Seq, ws.idx, now); err != nil {
			r.tr.errs.add("misrouted", err)
		}
	}
	return ids
}

// liveConn is a wallet's WebSocket in live mode.
type liveConn struct {
	ws      *walletState
	conn    *websocket.Conn
	mu      sync.Mutex // serialises writes
	once    sync.Once
	buf     bytes.Buffer
	pending string // outstanding delivery-request id; reader goroutine only
}

func newDialer(bufSize int) *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: 15 * time.Second, ReadBufferSize: bufSize, WriteBufferSize: bufSize}
}

// dialLive opens a socket to the wallet's ws endpoint and turns live
// delivery on. It returns the message count of the status reply.
func dialLive(ctx context.Context, d *websocket.Dialer, ws *walletState) (*liveConn, int, error) {
	if ws.w.WSEndpoint == "" {
		return nil, 0, errors.New("the mediator offered no ws endpoint")
	}
	c, _, err := d.DialContext(ctx, ws.w.WSEndpoint, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("dial %s: %w", ws.w.WSEndpoint, err)
	}
	lc := &liveConn{ws: ws, conn: c}
	id := uuid.NewString()
	if err := lc.send(map[string]any{"@type": typeLiveChange, "@id": id, "live_delivery": true}); err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("live-delivery-change: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetReadDeadline(deadline)
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	for {
		m, err := lc.read()
		if err != nil {
			c.Close()
			return nil, 0, fmt.Errorf("waiting for the live-mode status: %w", err)
		}
		if m.MsgType.Key() == keyStatus && m.ThreadID() == id {
			st, err := decodeStatus(m)
			if err != nil || st.LiveDelivery == nil || !*st.LiveDelivery {
				c.Close()
				return nil, 0, fmt.Errorf("live mode not confirmed: %s", truncate(m.Raw, 200))
			}
			return lc, st.MessageCount, nil
		}
		if m.MsgType.IsProblemReport() {
			c.Close()
			return nil, 0, fmt.Errorf("live-delivery-change refused: %s", truncate(m.Raw, 200))
		}
	}
}

func (lc *liveConn) send(msg map[string]any) error {
	msg["~transport"] = map[string]any{"return_route": "all"}
	packed, err := lc.ws.w.Pack(msg)
	if err != nil {
		return err
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	_ = lc.conn.SetWriteDeadline(time.Now().Add(15 * time.Second))
	return lc.conn.WriteMessage(websocket.BinaryMessage, packed)
}

// readRaw returns the next frame in the connection's reused buffer.
func (lc *liveConn) readRaw() ([]byte, error) {
	_, r, err := lc.conn.NextReader()
	if err != nil {
		return nil, err
	}
	lc.buf.Reset()
	if _, err := lc.buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return lc.buf.Bytes(), nil
}

// read returns the next message, opened.
func (lc *liveConn) read() (*didcomm.Message, error) {
	b, err := lc.readRaw()
	if err != nil {
		return nil, err
	}
	m, _, err := lc.ws.w.Unpack(b)
	return m, err
}

func (lc *liveConn) requestDelivery(batch int) error {
	id := uuid.NewString()
	if err := lc.send(map[string]any{"@type": typeDeliveryRequest, "@id": id, "limit": batch}); err != nil {
		return err
	}
	lc.pending = id
	return nil
}

// run reads until the socket closes: it acknowledges every delivery with
// messages-received and answers a status announcing waiting messages with
// a delivery-request (one outstanding at a time).
func (lc *liveConn) run(r *receiver, stopping func() bool, initialCount int) {
	if initialCount > 0 {
		if err := lc.requestDelivery(r.batch); err != nil {
			r.tr.errs.add("socket-write", err)
		}
	}
	for {
		b, err := lc.readRaw()
		if err != nil {
			if !stopping() {
				r.tr.errs.add("socket", fmt.Errorf("wallet %d: %w", lc.ws.idx, err))
			}
			return
		}
		m, _, err := lc.ws.w.Unpack(b)
		if err != nil {
			r.tr.errs.add("unpack", fmt.Errorf("wallet %d: %w", lc.ws.idx, err))
			continue
		}
		if lc.pending != "" && m.ThreadID() == lc.pending {
			lc.pending = ""
		}
		switch key := m.MsgType.Key(); {
		case key == keyDelivery:
			items, err := wallet.ParseDelivery(m)
			if err != nil {
				r.tr.errs.add("delivery", err)
				continue
			}
			ids := r.open(lc.ws, items)
			if len(ids) == 0 {
				continue
			}
			if err := lc.send(map[string]any{"@type": typeMessagesReceived, "@id": uuid.NewString(), "message_id_list": ids}); err != nil && !stopping() {
				r.tr.errs.add("socket-write", err)
			}
		case key == keyStatus:
			st, err := decodeStatus(m)
			if err != nil {
				r.tr.errs.add("status", err)
				continue
			}
			if st.MessageCount > 0 && lc.pending == "" {
				if err := lc.requestDelivery(r.batch); err != nil && !stopping() {
					r.tr.errs.add("socket-write", err)
				}
			}
		case m.MsgType.IsProblemReport():
			r.tr.errs.add("problem-report", fmt.Errorf("wallet %d: %s", lc.ws.idx, truncate(m.Raw, 300)))
		default:
			r.tr.errs.add("unexpected-type", fmt.Errorf("wallet %d: %s", lc.ws.idx, m.Type))
		}
	}
}

// close says goodbye and closes the socket; later calls do nothing.
func (lc *liveConn) close() {
	lc.once.Do(func() {
		_ = lc.conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, "load run over"), time.Now().Add(time.Second))
		_ = lc.conn.Close()
	})
}

type statusMsg struct {
	MessageCount int   `json:"message_count"`
	LiveDelivery *bool `json:"live_delivery"`
}

func decodeStatus(m *didcomm.Message) (statusMsg, error) {
	var st statusMsg
	err := m.Decode(&st)
	return st, err
}

// poll drains the wallet's queue with pickup v2 over HTTP until stop
// closes: delivery-request, messages-received while messages are waiting,
// then a pause of interval. It starts once start is closed.
func (r *receiver) poll(ctx context.Context, ws *walletState, interval time.Duration, start, stop <-chan struct{}) {
	select {
	case <-start:
	case <-stop:
		return
	case <-ctx.Done():
		return
	}
	pause := func() bool {
		t := time.NewTimer(interval)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-stop:
			return false
		case <-ctx.Done():
			return false
		}
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		more, err := r.pollOnce(ctx, ws)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.tr.errs.add("poll", fmt.Errorf("wallet %d: %w", ws.idx, err))
		}
		if more && err == nil {
			continue
		}
		if !pause() {
			return
		}
	}
}

// pollOnce asks for one batch and acknowledges it. more reports that the
// mediator says messages are still waiting.
func (r *receiver) pollOnce(ctx context.Context, ws *walletState) (more bool, err error) {
	reply, err := ws.w.Request(ctx, map[string]any{"@type": typeDeliveryRequest, "@id": uuid.NewString(), "limit": r.batch})
	if err != nil {
		return false, fmt.Errorf("delivery-request: %w", err)
	}
	if reply == nil {
		return false, errors.New("delivery-request: no reply")
	}
	switch key := reply.MsgType.Key(); {
	case key == keyStatus:
		return false, nil // nothing claimable now
	case key == keyDelivery:
	case reply.MsgType.IsProblemReport():
		return false, fmt.Errorf("delivery-request: %s", truncate(reply.Raw, 300))
	default:
		return false, fmt.Errorf("delivery-request: unexpected %s", reply.Type)
	}
	items, err := wallet.ParseDelivery(reply)
	if err != nil {
		return false, err
	}
	ids := r.open(ws, items)
	ack, err := ws.w.Request(ctx, map[string]any{"@type": typeMessagesReceived, "@id": uuid.NewString(), "message_id_list": ids})
	if err != nil {
		return false, fmt.Errorf("messages-received: %w", err)
	}
	if ack == nil || ack.MsgType.Key() != keyStatus {
		return true, nil
	}
	st, err := decodeStatus(ack)
	if err != nil {
		return false, err
	}
	return st.MessageCount > 0, nil
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
