// Package loadgen drives a DIDComm v1 mediator the way wallets and senders
// do, and measures it: K wallets connect (out-of-band invitation, DID
// Exchange, coordinate-mediation, keylist-update) and then hold a live
// WebSocket or poll with pickup v2 over HTTP, while S senders post forwards
// to them. Every forwarded plaintext carries the run id, a sequence number
// and the send time, so the wallets detect losses, duplicates and misrouted
// messages and measure latency from the moment the mediator accepted a
// forward (its POST returned) to the moment the wallet decrypted it.
//
// The client is meant to share a small machine with the mediator and its
// database: senders and wallets are a fixed set of goroutines, HTTP
// connections are kept alive, per-message state lives in preallocated
// arrays, and forwards can be packed before the clock starts (Prepack).
package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is how the wallets pick up their messages.
type Mode string

// Pickup modes.
const (
	// ModeLive: a WebSocket per wallet with pickup v2 live delivery on;
	// every delivery is acknowledged with messages-received.
	ModeLive Mode = "live"
	// ModePoll: pickup v2 over HTTP, delivery-request + messages-received
	// while messages are waiting, then a pause of PollInterval.
	ModePoll Mode = "poll"
	// ModeQueue: the wallets stay away while the senders run and drain
	// their queues over HTTP afterwards, so the forward rate measures
	// accepting and durably queueing alone.
	ModeQueue Mode = "queue"
)

// Config describes one load run. Zero values take the defaults.
type Config struct {
	Targets  []string // invitation URLs (?oob=) or base URLs answering GET /invitation
	Wallets  int      // K (default 10)
	Senders  int      // S (default 4)
	Messages int      // N in total (default 1000)
	Mode     Mode     // default ModeLive
	// Rate is the total forward rate in messages per second; 0 sends as
	// fast as the senders can.
	Rate float64
	// Direct talks to each target's own URL rather than to the endpoints
	// its invitation advertises (instances behind a load balancer advertise
	// the balancer).
	Direct bool
	// Random spreads messages over wallets and targets at random instead
	// of round robin.
	Random       bool
	PollInterval time.Duration // default 200ms
	Batch        int           // delivery-request limit (default 10)
	PayloadBytes int           // plaintext size of each message (default 700)
	// Prepack packs every forward before the clock starts, so the client
	// spends only the HTTP POST per forward while measuring. The plaintext's
	// send time is then the packing time.
	Prepack bool
	// Timeout bounds the whole run, setup and settling included (default 2m).
	Timeout time.Duration
	// Settle is how long the wallets keep listening after the last
	// delivery, to catch late duplicates (default 1s).
	Settle             time.Duration
	ConnectConcurrency int // wallets set up at once (default 8)
	// HTTPClient is shared by every sender and wallet; default NewHTTPClient.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// withDefaults fills in zero values; ownClient reports that it made the
// HTTP client (whose idle connections the run then closes at the end).
func (c Config) withDefaults() (cfg Config, ownClient bool) {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Wallets, 10)
	def(&c.Senders, 4)
	def(&c.Messages, 1000)
	def(&c.Batch, 10)
	def(&c.PayloadBytes, 700)
	def(&c.ConnectConcurrency, 8)
	if c.Mode == "" {
		c.Mode = ModeLive
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.Settle < 0 {
		c.Settle = 0
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = NewHTTPClient(c.Senders + c.Wallets + 8)
		ownClient = true
	}
	return c, ownClient
}

func (c Config) validate() error {
	switch c.Mode {
	case ModeLive, ModePoll, ModeQueue:
	default:
		return fmt.Errorf("loadgen: mode %q: use live, poll or queue", c.Mode)
	}
	if len(c.Targets) == 0 {
		return errors.New("loadgen: at least one target is required")
	}
	if len(c.Targets) > 1<<15 {
		return errors.New("loadgen: too many targets")
	}
	if c.Rate < 0 {
		return errors.New("loadgen: rate must not be negative")
	}
	return nil
}

// Durations are the phases of a run, in milliseconds.
type Durations struct {
	Setup  float64 `json:"setup"`  // resolving targets, connecting wallets and sockets
	Pack   float64 `json:"pack"`   // prepacking (0 without Prepack)
	Send   float64 `json:"send"`   // first forward sent to last forward answered
	Drain  float64 `json:"drain"`  // last forward answered to last delivery
	Settle float64 `json:"settle"` // listening for late duplicates
	Total  float64 `json:"total"`
}

// Result is what a run measured.
type Result struct {
	Mode         Mode     `json:"mode"`
	Targets      []string `json:"targets"`
	Wallets      int      `json:"wallets"`
	Senders      int      `json:"senders"`
	Messages     int      `json:"messages"`
	Rate         float64  `json:"rate"`
	Distribution string   `json:"distribution"`
	Direct       bool     `json:"direct"`
	Prepacked    bool     `json:"prepacked"`
	PayloadBytes int      `json:"payloadBytes"` // plaintext per message
	InnerBytes   int      `json:"innerBytes"`   // mean packed message the mediator stores
	ForwardBytes int      `json:"forwardBytes"` // mean forward posted

	Accepted             int64 `json:"accepted"`  // forwards answered 202
	Failed               int64 `json:"failed"`    // forwards that got an error
	Unsent               int64 `json:"unsent"`    // never sent (the run timed out)
	Delivered            int64 `json:"delivered"` // distinct messages decrypted by their wallet
	Lost                 int64 `json:"lost"`      // accepted, never delivered
	Duplicates           int64 `json:"duplicates"`
	DeliveredNotAccepted int64 `json:"deliveredNotAccepted"` // delivered although the POST failed
	Errors               int64 `json:"errors"`

	ErrorKinds   map[string]int64  `json:"errorKinds,omitempty"`
	ErrorSamples map[string]string `json:"errorSamples,omitempty"`

	ForwardsPerSec  float64 `json:"forwardsPerSec"`
	DeliveredPerSec float64 `json:"deliveredPerSec"`
	// LatencyMs is accepted (POST returned) → decrypted by the wallet. On a
	// fast path the push can reach the wallet before the POST's answer
	// reaches the sender; such messages count as 0 (see EarlyDeliveries).
	LatencyMs Percentiles `json:"latencyMs"`
	// SentLatencyMs is POST sent → decrypted by the wallet.
	SentLatencyMs Percentiles `json:"sentLatencyMs"`
	// EarlyDeliveries counts messages decrypted before their POST returned.
	EarlyDeliveries int64 `json:"earlyDeliveries"`
	// AcceptLatencyMs is the forward's POST round trip.
	AcceptLatencyMs Percentiles `json:"acceptLatencyMs"`
	// With several targets: latency of messages accepted by a target other
	// than (cross) or the same as (same) the one the wallet picks up from.
	CrossLatencyMs *Percentiles `json:"crossLatencyMs,omitempty"`
	SameLatencyMs  *Percentiles `json:"sameLatencyMs,omitempty"`

	Durations        Durations `json:"durationsMs"`
	ClientCPUSeconds float64   `json:"clientCpuSeconds"` // this process, send start to last delivery
	TimedOut         bool      `json:"timedOut"`
}

// OK reports a clean run: everything accepted was delivered exactly once,
// nothing failed, nothing timed out.
func (r *Result) OK() bool {
	return r.Lost == 0 && r.Duplicates == 0 && r.Errors == 0 && !r.TimedOut && r.Unsent == 0
}

// Run performs one load run. It returns an error only when the run could
// not take place (a target does not answer, a wallet cannot connect);
// failures during the run are counted in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, ownClient := cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if ownClient {
		defer cfg.HTTPClient.CloseIdleConnections()
	}
	log := cfg.Logger
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	targets, err := resolveTargets(ctx, cfg.HTTPClient, cfg.Targets, cfg.Direct)
	if err != nil {
		return nil, err
	}
	if cfg.Mode == ModeLive {
		for _, t := range targets {
			if t.WS == "" {
				return nil, fmt.Errorf("loadgen: target %s offers no ws endpoint; live mode needs one", t.URL)
			}
		}
	}

	// The receivers' context outlives the wait for deliveries by Settle but
	// is cancelled at the end so no request is left hanging.
	recvCtx, stopRecv := context.WithCancel(ctx)
	defer stopRecv()
	var stoppingFlag atomic.Bool
	stopping := stoppingFlag.Load

	dialer := newDialer(4096)
	live := make([]*liveConn, cfg.Wallets)
	liveCount := make([]int, cfg.Wallets)
	var after func(context.Context, *walletState) error
	if cfg.Mode == ModeLive {
		after = func(ctx context.Context, ws *walletState) error {
			lc, n, err := dialLive(ctx, dialer, ws)
			if err != nil {
				return err
			}
			live[ws.idx], liveCount[ws.idx] = lc, n
			return nil
		}
	}
	log.Info("connecting wallets", "wallets", cfg.Wallets, "targets", len(targets), "mode", cfg.Mode)
	closeLive := func() {
		for _, lc := range live {
			if lc != nil {
				lc.close()
			}
		}
	}
	defer closeLive() // on every return; a no-op once closed
	wallets, err := setupWallets(ctx, cfg.Wallets, cfg.ConnectConcurrency, cfg.HTTPClient, targets, after)
	if err != nil {
		return nil, err
	}
	setupDone := time.Now()
	log.Info("wallets ready", "took", setupDone.Sub(began).Round(time.Millisecond))

	run := newRunID()
	tr := newTracker(cfg.Messages, setupDone)
	rcv := &receiver{run: run, tr: tr, batch: cfg.Batch}
	asg := assigner{wallets: cfg.Wallets, targets: len(targets), random: cfg.Random}

	var prepacked [][]byte
	var innerSum, fwdSum atomic.Int64
	if cfg.Prepack {
		prepacked, err = prepack(ctx, cfg, run, asg, wallets, tr, &innerSum, &fwdSum)
		if err != nil {
			return nil, err
		}
	}
	packDone := time.Now()

	packers := make([]*packer, cfg.Senders)
	for s := range packers {
		if packers[s], err = newPacker(run, cfg.PayloadBytes); err != nil {
			return nil, err
		}
	}

	// Receivers.
	var recvWG sync.WaitGroup
	stop := make(chan struct{})
	sendDone := make(chan struct{})
	startPoll := make(chan struct{})
	switch cfg.Mode {
	case ModeLive:
		for i, lc := range live {
			recvWG.Add(1)
			go func() {
				defer recvWG.Done()
				lc.run(rcv, stopping, liveCount[i])
			}()
		}
	case ModePoll, ModeQueue:
		if cfg.Mode == ModePoll {
			close(startPoll)
		}
		for _, ws := range wallets {
			recvWG.Add(1)
			go func() {
				defer recvWG.Done()
				rcv.poll(recvCtx, ws, cfg.PollInterval, startPoll, stop)
			}()
		}
	}

	// Senders.
	cpu0 := cpuTime()
	sendStart := time.Now()
	sendStartNs := tr.since(sendStart)
	var next atomic.Int64
	var sendWG sync.WaitGroup
	for s, pk := range packers {
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			sd := &sender{cfg: cfg, tr: tr, targets: targets, wallets: wallets, asg: asg, pk: pk,
				post: newPoster(cfg.HTTPClient), rng: mrand.New(mrand.NewPCG(uint64(s), uint64(sendStart.UnixNano()))),
				prepacked: prepacked, innerSum: &innerSum, fwdSum: &fwdSum}
			defer sd.post.close()
			sd.loop(ctx, &next, sendStart)
		}()
	}
	go func() { sendWG.Wait(); close(sendDone) }()
	log.Info("sending", "messages", cfg.Messages, "senders", cfg.Senders, "rate", cfg.Rate)

	// Wait for the senders, then (queue mode) let the wallets in, then
	// wait until every accepted forward has been delivered.
	select {
	case <-sendDone:
	case <-ctx.Done():
	}
	sendEnd := time.Now()
	if cfg.Mode == ModeQueue {
		close(startPoll)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	for !tr.complete() && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	tick.Stop()
	timedOut := !tr.complete() || isSendCut(tr)
	cpu1 := cpuTime()
	waitEnd := time.Now()
	log.Info("delivered", "accepted", tr.accepted.Load(), "delivered", tr.deliveredUnique.Load(), "timed_out", timedOut)

	// Settle: keep listening for duplicates.
	if cfg.Settle > 0 && ctx.Err() == nil {
		t := time.NewTimer(cfg.Settle)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	settleEnd := time.Now()
	stoppingFlag.Store(true)
	close(stop)
	stopRecv()
	closeLive()
	waitGroupTimeout(&recvWG, 10*time.Second)

	res := buildResult(cfg, tr, targets, wallets, timedOut)
	res.Prepacked = cfg.Prepack
	sent := max(res.Accepted+res.Failed, 1)
	if cfg.Prepack {
		sent = int64(cfg.Messages) // every message was packed
	}
	res.InnerBytes = int(innerSum.Load() / sent)
	res.ForwardBytes = int(fwdSum.Load() / sent)
	if la := tr.lastAccept.Load(); la > sendStartNs && res.Accepted > 0 {
		res.ForwardsPerSec = round3(float64(res.Accepted) / (float64(la-sendStartNs) / 1e9))
	}
	if ld := tr.lastDeliver.Load(); ld > sendStartNs && res.Delivered > 0 {
		res.DeliveredPerSec = round3(float64(res.Delivered) / (float64(ld-sendStartNs) / 1e9))
	}
	lastDeliver := tr.start.Add(time.Duration(tr.lastDeliver.Load()))
	res.Durations = Durations{
		Setup:  ms(int64(setupDone.Sub(began))),
		Pack:   ms(int64(packDone.Sub(setupDone))),
		Send:   ms(int64(sendEnd.Sub(sendStart))),
		Drain:  ms(max(0, int64(lastDeliver.Sub(sendEnd)))),
		Settle: ms(int64(settleEnd.Sub(waitEnd))),
		Total:  ms(int64(time.Since(began))),
	}
	res.ClientCPUSeconds = round3((cpu1 - cpu0).Seconds())
	return res, nil
}

// isSendCut reports whether some messages were never sent.
func isSendCut(tr *tracker) bool {
	return tr.accepted.Load()+tr.failed.Load() < int64(tr.n)
}

func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func waitGroupTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// prepack packs every forward with Senders goroutines.
func prepack(ctx context.Context, cfg Config, run string, asg assigner, wallets []*walletState, tr *tracker,
	innerSum, fwdSum *atomic.Int64) ([][]byte, error) {
	out := make([][]byte, cfg.Messages)
	rng := mrand.New(mrand.NewPCG(1, uint64(time.Now().UnixNano())))
	for seq := range out {
		w, t := asg.assign(seq, rng)
		tr.assign(seq, w, t)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, cfg.Senders)
	for range cfg.Senders {
		pk, err := newPacker(run, cfg.PayloadBytes)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				seq := int(next.Add(1) - 1)
				if seq >= len(out) {
					return
				}
				b, innerLen, err := pk.pack(seq, wallets[tr.wallet[seq].Load()], time.Now())
				if err != nil {
					errc <- err
					return
				}
				out[seq] = b
				innerSum.Add(int64(innerLen))
				fwdSum.Add(int64(len(b)))
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("loadgen: prepack: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loadgen: prepack: %w", err)
	}
	// The sums count every message once; they are divided by the number
	// sent at the end, which is the same unless the run times out.
	return out, nil
}

// sender posts forwards until the sequence numbers run out.
type sender struct {
	cfg       Config
	tr        *tracker
	targets   []Target
	wallets   []*walletState
	asg       assigner
	pk        *packer
	post      *poster
	rng       *mrand.Rand
	prepacked [][]byte
	innerSum  *atomic.Int64
	fwdSum    *atomic.Int64
}

func (s *sender) loop(ctx context.Context, next *atomic.Int64, start time.Time) {
	var interval time.Duration
	if s.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / s.cfg.Rate)
	}
	var timer *time.Timer
	for ctx.Err() == nil {
		seq := int(next.Add(1) - 1)
		if seq >= s.cfg.Messages {
			return
		}
		if interval > 0 {
			if wait := time.Until(start.Add(time.Duration(seq) * interval)); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
			}
		}
		var body []byte
		if s.prepacked != nil {
			body = s.prepacked[seq]
		} else {
			w, t := s.asg.assign(seq, s.rng)
			s.tr.assign(seq, w, t)
			b, innerLen, err := s.pk.pack(seq, s.wallets[w], time.Now())
			if err != nil {
				s.tr.fail(seq, "pack", err)
				continue
			}
			body = b
			s.innerSum.Add(int64(innerLen))
			s.fwdSum.Add(int64(len(b)))
		}
		endpoint := s.targets[s.tr.target[seq].Load()].HTTP
		sent := time.Now()
		err := s.post.post(ctx, endpoint, body)
		done := time.Now()
		if err != nil {
			s.tr.fail(seq, errorKind(err), fmt.Errorf("forward %d to %s: %w", seq, endpoint, err))
			continue
		}
		s.tr.accept(seq, sent, done)
		if s.prepacked != nil {
			s.prepacked[seq] = nil // let the GC have it
		}
	}
}

// buildResult walks the per-message arrays once.
func buildResult(cfg Config, tr *tracker, targets []Target, wallets []*walletState, timedOut bool) *Result {
	res := &Result{
		Mode: cfg.Mode, Wallets: cfg.Wallets, Senders: cfg.Senders, Messages: cfg.Messages,
		Rate: cfg.Rate, Distribution: "roundrobin", Direct: cfg.Direct, PayloadBytes: cfg.PayloadBytes, TimedOut: timedOut,
	}
	if cfg.Random {
		res.Distribution = "random"
	}
	for _, t := range targets {
		res.Targets = append(res.Targets, t.URL)
	}
	var lat, sentLat, rtt, cross, same []int64
	for seq := range tr.n {
		st := tr.state[seq].Load()
		n := int64(tr.deliveries[seq].Load())
		accepted := st&bitAccepted != 0
		switch {
		case accepted:
			res.Accepted++
			rtt = append(rtt, tr.acceptRTT[seq].Load())
		case st&bitFailed != 0:
			res.Failed++
		default:
			res.Unsent++
		}
		if n > 0 {
			res.Delivered++
			res.Duplicates += n - 1
		}
		switch {
		case accepted && n == 0:
			res.Lost++
		case accepted:
			delivered, acceptedAt := tr.deliveredAt[seq].Load(), tr.acceptedAt[seq].Load()
			if delivered < acceptedAt {
				res.EarlyDeliveries++
			}
			d := max(0, delivered-acceptedAt)
			lat = append(lat, d)
			sentLat = append(sentLat, max(0, delivered-(acceptedAt-tr.acceptRTT[seq].Load())))
			if len(targets) > 1 {
				if int(tr.target[seq].Load()) == wallets[tr.wallet[seq].Load()].target {
					same = append(same, d)
				} else {
					cross = append(cross, d)
				}
			}
		case n > 0:
			res.DeliveredNotAccepted++
		}
	}
	res.LatencyMs = percentiles(lat)
	res.AcceptLatencyMs = percentiles(rtt)
	res.SentLatencyMs = percentiles(sentLat)
	if len(targets) > 1 {
		c, s := percentiles(cross), percentiles(same)
		res.CrossLatencyMs, res.SameLatencyMs = &c, &s
	}
	res.Errors, res.ErrorKinds, res.ErrorSamples = tr.errs.snapshot()
	return res
}
