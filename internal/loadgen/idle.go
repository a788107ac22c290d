package loadgen

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// IdleConfig describes an idle-sockets run: a handful of wallets connect,
// then Sockets WebSockets are opened (spread over the wallets and targets),
// each with live delivery turned on, and held open without traffic.
type IdleConfig struct {
	Targets     []string
	Sockets     int           // default 1000
	Wallets     int           // wallets the sockets belong to (default 10)
	Direct      bool          // as Config.Direct
	Hold        time.Duration // how long to hold them all open (default 10s)
	Concurrency int           // sockets being opened at once (default 64)
	// WatchPID, if set, is the mediator process whose memory is sampled
	// before the sockets open and while they are held (Linux /proc).
	WatchPID   int
	Timeout    time.Duration // bounds the whole run (default 5m)
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// IdleResult is what an idle-sockets run measured.
type IdleResult struct {
	Targets     []string `json:"targets"`
	Wallets     int      `json:"wallets"`
	Sockets     int      `json:"sockets"`
	Opened      int      `json:"opened"`      // sockets live (status with live_delivery true received)
	Failed      int      `json:"failed"`      // sockets that could not be opened or made live
	ClosedEarly int      `json:"closedEarly"` // live sockets the server closed before the end of the hold
	OpenSeconds float64  `json:"openSeconds"` // time to open them all
	HoldSeconds float64  `json:"holdSeconds"`
	// Memory of WatchPID before opening and at the end of the hold.
	Before       *Memory           `json:"before,omitempty"`
	Held         *Memory           `json:"held,omitempty"`
	RSSHeldMB    float64           `json:"rssHeldMB,omitempty"`
	PerSocketKiB float64           `json:"perSocketKiB,omitempty"` // (held − before) / opened
	ErrorKinds   map[string]int64  `json:"errorKinds,omitempty"`
	ErrorSamples map[string]string `json:"errorSamples,omitempty"`
}

// OK reports that every socket opened and stayed open.
func (r *IdleResult) OK() bool { return r.Failed == 0 && r.ClosedEarly == 0 && r.Opened == r.Sockets }

// RunIdle opens and holds idle live sockets.
func RunIdle(ctx context.Context, cfg IdleConfig) (*IdleResult, error) {
	if cfg.Sockets <= 0 {
		cfg.Sockets = 1000
	}
	if cfg.Wallets <= 0 {
		cfg.Wallets = 10
	}
	cfg.Wallets = min(cfg.Wallets, cfg.Sockets)
	if cfg.Hold <= 0 {
		cfg.Hold = 10 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = NewHTTPClient(cfg.Wallets + 4)
	}
	log := cfg.Logger
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	targets, err := resolveTargets(ctx, cfg.HTTPClient, cfg.Targets, cfg.Direct)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		if t.WS == "" {
			return nil, fmt.Errorf("loadgen: target %s offers no ws endpoint", t.URL)
		}
	}
	wallets, err := setupWallets(ctx, cfg.Wallets, 8, cfg.HTTPClient, targets, nil)
	if err != nil {
		return nil, err
	}
	res := &IdleResult{Wallets: cfg.Wallets, Sockets: cfg.Sockets}
	for _, t := range targets {
		res.Targets = append(res.Targets, t.URL)
	}
	if cfg.WatchPID > 0 {
		// Let the handshakes' garbage go first.
		time.Sleep(500 * time.Millisecond)
		if m, err := ReadMemory(cfg.WatchPID); err == nil {
			res.Before = &m
		} else {
			log.Warn("cannot read the watched process's memory", "err", err)
		}
	}

	errs := errorLog{counts: map[string]int64{}, samples: map[string]string{}}
	conns := make([]*liveConn, cfg.Sockets)
	dialer := newDialer(1024)
	var (
		next, opened, closedEarly atomic.Int64
		closing                   atomic.Bool
		openWG, readWG            sync.WaitGroup
	)
	start := time.Now()
	for range cfg.Concurrency {
		openWG.Add(1)
		go func() {
			defer openWG.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.Sockets {
					return
				}
				lc, _, err := dialLive(ctx, dialer, wallets[i%len(wallets)])
				if err != nil {
					errs.add("open", fmt.Errorf("socket %d: %w", i, err))
					continue
				}
				conns[i] = lc
				opened.Add(1)
				// Read (and so answer the server's pings) until closed.
				readWG.Add(1)
				go func() {
					defer readWG.Done()
					for {
						_, r, err := lc.conn.NextReader()
						if err != nil {
							if !closing.Load() {
								closedEarly.Add(1)
							}
							return
						}
						_, _ = io.Copy(io.Discard, r)
					}
				}()
				if n := opened.Load(); n%1000 == 0 {
					log.Info("sockets open", "count", n)
				}
			}
		}()
	}
	openWG.Wait()
	res.OpenSeconds = round3(time.Since(start).Seconds())
	res.Opened = int(opened.Load())
	log.Info("holding sockets", "open", res.Opened, "took", time.Since(start).Round(time.Millisecond), "hold", cfg.Hold)

	holdStart := time.Now()
	t := time.NewTimer(cfg.Hold)
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	if cfg.WatchPID > 0 {
		if m, err := ReadMemory(cfg.WatchPID); err == nil {
			res.Held = &m
			res.RSSHeldMB = round3(float64(m.RSSKiB) / 1024)
			if res.Before != nil && res.Opened > 0 {
				res.PerSocketKiB = round3(float64(m.RSSKiB-res.Before.RSSKiB) / float64(res.Opened))
			}
		} else {
			log.Warn("cannot read the watched process's memory", "err", err)
		}
	}
	res.HoldSeconds = round3(time.Since(holdStart).Seconds())
	res.ClosedEarly = int(closedEarly.Load())
	closing.Store(true)
	for _, lc := range conns {
		if lc != nil {
			_ = lc.conn.Close()
		}
	}
	waitGroupTimeout(&readWG, 10*time.Second)
	var total int64
	total, res.ErrorKinds, res.ErrorSamples = errs.snapshot()
	res.Failed = int(total)
	return res, nil
}
