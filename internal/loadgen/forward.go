package loadgen

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/openmediator/mediator/envelope"
	"github.com/openmediator/mediator/internal/wallet"
)

// loadPlain is the part of a forwarded plaintext the receiving wallet reads.
type loadPlain struct {
	Load struct {
		Run  string `json:"run"`
		Seq  int64  `json:"seq"`
		Sent int64  `json:"sent"` // unix nanoseconds when the sender built it
	} `json:"~load"`
}

// packer builds and packs forwards for one sender, reusing its buffers.
type packer struct {
	key          ed25519.PrivateKey
	run          string
	payloadBytes int
	plain, fwd   []byte
}

func newPacker(run string, payloadBytes int) (*packer, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &packer{key: key, run: run, payloadBytes: payloadBytes}, nil
}

// plaintext builds a basicmessage carrying the run id, the sequence number
// and the send time, padded to payloadBytes.
func (p *packer) plaintext(seq int, sent time.Time) []byte {
	b := p.plain[:0]
	b = append(b, `{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"load-`...)
	b = append(b, p.run...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `","sent_time":"`...)
	b = sent.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","~load":{"run":"`...)
	b = append(b, p.run...)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"sent":`...)
	b = strconv.AppendInt(b, sent.UnixNano(), 10)
	b = append(b, `},"content":"`...)
	for pad := p.payloadBytes - len(b) - 2; pad > 0; pad-- {
		b = append(b, 'x')
	}
	b = append(b, `"}`...)
	p.plain = b
	return b
}

// inner authcrypts the plaintext for the wallet, as a real sender does.
func (p *packer) inner(seq int, w *walletState, sent time.Time) ([]byte, error) {
	return envelope.PackAuthcrypt(p.plaintext(seq, sent), p.key, w.pub)
}

// forward wraps inner in a routing/1.0 forward to the wallet's key and
// anoncrypts it for the mediator's routing key.
func (p *packer) forward(seq int, w *walletState, inner []byte) ([]byte, error) {
	b := p.fwd[:0]
	b = append(b, `{"@type":"https://didcomm.org/routing/1.0/forward","@id":"fwd-`...)
	b = append(b, p.run...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `","to":"`...)
	b = append(b, w.verkey...)
	b = append(b, `","msg":`...)
	b = append(b, inner...)
	b = append(b, '}')
	p.fwd = b
	return envelope.PackAnoncrypt(b, w.routing)
}

func (p *packer) pack(seq int, w *walletState, sent time.Time) (outer []byte, innerLen int, err error) {
	in, err := p.inner(seq, w, sent)
	if err != nil {
		return nil, 0, err
	}
	out, err := p.forward(seq, w, in)
	return out, len(in), err
}

// SampleInner returns a packed message shaped like the ones the generator
// forwards (a basicmessage of payloadBytes, authcrypted): what the mediator
// stores per queued message. Benchmarks use it as a realistic payload.
func SampleInner(payloadBytes int) ([]byte, error) {
	p, err := newPacker("sample00", payloadBytes)
	if err != nil {
		return nil, err
	}
	w, err := newWalletState(0, nil)
	if err != nil {
		return nil, err
	}
	return p.inner(0, w, time.Now())
}

// assigner decides which wallet a message is for and which target its
// forward goes to.
type assigner struct {
	wallets, targets int
	random           bool
}

// assign maps seq to (wallet, target). Round robin rotates each wallet's
// forwards over the targets, so with several targets most forwards reach a
// wallet through an instance other than the one holding its socket.
func (a assigner) assign(seq int, rng *mrand.Rand) (wallet, target int) {
	if a.random {
		return rng.IntN(a.wallets), rng.IntN(a.targets)
	}
	w := seq % a.wallets
	return w, (w + seq/a.wallets) % a.targets
}

func errorKind(err error) string {
	var se *wallet.StatusError
	switch {
	case errors.As(err, &se):
		return "forward-http-" + strconv.Itoa(se.Code)
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "Client.Timeout"):
		return "forward-timeout"
	default:
		return "forward-transport"
	}
}

// decodeLoad reads the load fields of a decrypted plaintext.
func decodeLoad(plain []byte) (loadPlain, error) {
	var lp loadPlain
	if err := json.Unmarshal(plain, &lp); err != nil {
		return lp, fmt.Errorf("plaintext: %w", err)
	}
	return lp, nil
}
