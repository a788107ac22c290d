package loadgen

import (
	"bytes"
	"crypto/ed25519"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/openmediator/mediator/envelope"
)

func TestPercentilesNearestRank(t *testing.T) {
	ns := make([]int64, 100)
	for i := range ns {
		ns[i] = int64(100-i) * int64(time.Millisecond) // 100 ms … 1 ms, unsorted
	}
	p := percentiles(ns)
	if p.Count != 100 || p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.Max != 100 || p.Mean != 50.5 {
		t.Fatalf("percentiles = %+v", p)
	}
	if (percentiles(nil) != Percentiles{}) {
		t.Fatal("percentiles of nothing are not zero")
	}
}

func TestRoundRobinRotatesTargetsPerWallet(t *testing.T) {
	a := assigner{wallets: 4, targets: 2}
	cross := 0
	perWallet := make([]int, 4)
	for seq := range 400 {
		w, tg := a.assign(seq, nil)
		perWallet[w]++
		if tg != w%2 { // wallet w holds its socket on target w%2
			cross++
		}
	}
	for w, n := range perWallet {
		if n != 100 {
			t.Errorf("wallet %d got %d messages, want 100", w, n)
		}
	}
	if cross != 200 {
		t.Errorf("%d of 400 forwards cross targets, want 200", cross)
	}
	r := assigner{wallets: 3, targets: 2, random: true}
	rng := rand.New(rand.NewPCG(1, 2))
	for seq := range 100 {
		if w, tg := r.assign(seq, rng); w < 0 || w >= 3 || tg < 0 || tg >= 2 {
			t.Fatalf("random assignment out of range: %d %d", w, tg)
		}
	}
}

func TestTrackerCountsLossesDuplicatesAndMisroutes(t *testing.T) {
	start := time.Now()
	tr := newTracker(4, start)
	for seq := range 4 {
		tr.assign(seq, seq%2, 0)
	}
	at := start.Add(time.Millisecond)
	tr.accept(0, at, at.Add(time.Millisecond))
	tr.accept(1, at, at.Add(time.Millisecond))
	tr.accept(2, at, at.Add(time.Millisecond))
	tr.fail(3, "forward-http-500", nil)
	if tr.complete() {
		t.Fatal("complete before any delivery")
	}
	for _, d := range []struct {
		seq    int64
		wallet int
	}{{0, 0}, {0, 0}, {1, 1}} {
		if err := tr.deliver(d.seq, d.wallet, at.Add(5*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.deliver(2, 1, at); err == nil {
		t.Fatal("message for wallet 0 accepted from wallet 1")
	}
	if err := tr.deliver(9, 0, at); err == nil {
		t.Fatal("out-of-range sequence number accepted")
	}
	if tr.complete() {
		t.Fatal("complete with message 2 outstanding")
	}
	res := buildResult(Config{Mode: ModeLive, Wallets: 2, Messages: 4}, tr, []Target{{URL: "x"}},
		[]*walletState{{target: 0}, {target: 0}}, false)
	if res.Accepted != 3 || res.Failed != 1 || res.Delivered != 2 || res.Lost != 1 || res.Duplicates != 1 {
		t.Fatalf("result %+v", res)
	}
	if res.LatencyMs.Count != 2 || res.LatencyMs.P50 != 4 {
		t.Fatalf("latency %+v, want 2 samples of 4 ms", res.LatencyMs)
	}
	if res.OK() {
		t.Fatal("a run with a loss is OK")
	}
}

func TestPlaintextCarriesSequenceAndSendTime(t *testing.T) {
	p, err := newPacker("abcd1234", 700)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := newWalletState(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	plain := p.plaintext(42, sent)
	if len(plain) != 700 {
		t.Errorf("plaintext of %d bytes, want 700", len(plain))
	}
	inner, err := p.inner(42, ws, sent)
	if err != nil {
		t.Fatal(err)
	}
	un, err := ws.w.Open(inner)
	if err != nil {
		t.Fatal(err)
	}
	if un.SenderKey == "" || un.RecipientKey != ws.verkey {
		t.Errorf("inner envelope sender %q recipient %q", un.SenderKey, un.RecipientKey)
	}
	lp, err := decodeLoad(un.Plaintext)
	if err != nil || lp.Load.Run != "abcd1234" || lp.Load.Seq != 42 || lp.Load.Sent != sent.UnixNano() {
		t.Fatalf("decoded %+v, %v", lp, err)
	}
	// The forward opens with the routing key and names the wallet.
	_, routing, _ := ed25519.GenerateKey(nil)
	ws.routing = routing.Public().(ed25519.PublicKey)
	outer, err := p.forward(42, ws, inner)
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := envelope.Unpack(outer, func(string) (ed25519.PrivateKey, bool) { return routing, true })
	if err != nil || fwd.SenderKey != "" {
		t.Fatalf("forward: %v (sender %q, want anoncrypt)", err, fwd.SenderKey)
	}
	if !bytes.Contains(fwd.Plaintext, []byte(`"to":"`+ws.verkey+`"`)) || !bytes.Contains(fwd.Plaintext, inner) {
		t.Fatalf("forward plaintext does not name the wallet or carry the message: %.200s", fwd.Plaintext)
	}
}
