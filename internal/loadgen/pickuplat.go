package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/internal/wallet"
)

// PickupLatencyConfig describes a delivery-request latency probe: one
// wallet, and rounds of "queue Batch messages for it, then time one
// delivery-request for them and one messages-received".
type PickupLatencyConfig struct {
	Target       string
	Requests     int // timed rounds (default 200)
	Warmup       int // untimed rounds first (default 20)
	Batch        int // messages per round (default 10)
	PayloadBytes int // plaintext per message (default 700)
	Timeout      time.Duration
	HTTPClient   *http.Client
	Logger       *slog.Logger
}

// PickupLatencyResult holds the round trips, measured from just before the
// packed request is posted to the moment its reply has been read (packing
// the request and opening the reply are not included).
type PickupLatencyResult struct {
	Target             string            `json:"target"`
	Requests           int               `json:"requests"`
	Batch              int               `json:"batch"`
	DeliveryRequestMs  Percentiles       `json:"deliveryRequestMs"`
	MessagesReceivedMs Percentiles       `json:"messagesReceivedMs"`
	Errors             int64             `json:"errors"`
	ErrorKinds         map[string]int64  `json:"errorKinds,omitempty"`
	ErrorSamples       map[string]string `json:"errorSamples,omitempty"`
}

// RunPickupLatency runs the probe.
func RunPickupLatency(ctx context.Context, cfg PickupLatencyConfig) (*PickupLatencyResult, error) {
	if cfg.Requests <= 0 {
		cfg.Requests = 200
	}
	if cfg.Warmup < 0 {
		cfg.Warmup = 0
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 10
	}
	if cfg.PayloadBytes <= 0 {
		cfg.PayloadBytes = 700
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = NewHTTPClient(4)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	t, err := ResolveTarget(ctx, cfg.HTTPClient, cfg.Target)
	if err != nil {
		return nil, err
	}
	wallets, err := setupWallets(ctx, 1, 1, cfg.HTTPClient, []Target{t}, nil)
	if err != nil {
		return nil, err
	}
	ws := wallets[0]
	pk, err := newPacker(newRunID(), cfg.PayloadBytes)
	if err != nil {
		return nil, err
	}
	post := newPoster(cfg.HTTPClient)
	defer post.close()
	errs := errorLog{counts: map[string]int64{}, samples: map[string]string{}}
	var deliveryRTT, ackRTT []int64
	seq := 0
	for round := range cfg.Warmup + cfg.Requests {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("loadgen: pickup latency: %w", err)
		}
		for range cfg.Batch {
			body, _, err := pk.pack(seq, ws, time.Now())
			seq++
			if err == nil {
				err = post.post(ctx, t.HTTP, body)
			}
			if err != nil {
				errs.add("forward", err)
			}
		}
		d, a, err := pickupRound(ctx, ws, cfg.Batch)
		if err != nil {
			errs.add("pickup", err)
			continue
		}
		if round >= cfg.Warmup {
			deliveryRTT = append(deliveryRTT, int64(d))
			ackRTT = append(ackRTT, int64(a))
		}
	}
	res := &PickupLatencyResult{Target: cfg.Target, Requests: cfg.Requests, Batch: cfg.Batch,
		DeliveryRequestMs: percentiles(deliveryRTT), MessagesReceivedMs: percentiles(ackRTT)}
	res.Errors, res.ErrorKinds, res.ErrorSamples = errs.snapshot()
	return res, nil
}

// pickupRound times one delivery-request and its messages-received.
func pickupRound(ctx context.Context, ws *walletState, batch int) (delivery, ack time.Duration, err error) {
	timed := func(msg map[string]any) ([]byte, time.Duration, error) {
		msg["~transport"] = map[string]any{"return_route": "all"}
		packed, err := ws.w.Pack(msg)
		if err != nil {
			return nil, 0, err
		}
		start := time.Now()
		body, err := ws.w.Post(ctx, ws.w.Endpoint, packed)
		return body, time.Since(start), err
	}
	body, delivery, err := timed(map[string]any{"@type": typeDeliveryRequest, "@id": uuid.NewString(), "limit": batch})
	if err != nil {
		return 0, 0, fmt.Errorf("delivery-request: %w", err)
	}
	if body == nil {
		return 0, 0, errors.New("delivery-request: no reply")
	}
	m, _, err := ws.w.Unpack(body)
	if err != nil {
		return 0, 0, fmt.Errorf("delivery-request reply: %w", err)
	}
	if m.MsgType.Key() != keyDelivery {
		return 0, 0, fmt.Errorf("delivery-request: got %s, want a delivery", m.Type)
	}
	items, err := wallet.ParseDelivery(m)
	if err != nil {
		return 0, 0, err
	}
	if len(items) != batch {
		err = fmt.Errorf("delivery of %d messages, want %d", len(items), batch)
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	_, ack, ackErr := timed(map[string]any{"@type": typeMessagesReceived, "@id": uuid.NewString(), "message_id_list": ids})
	if ackErr != nil {
		return 0, 0, fmt.Errorf("messages-received: %w", ackErr)
	}
	return delivery, ack, err
}
