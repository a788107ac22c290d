package pickup

import (
	"context"
	"log/slog"
	"time"

	"github.com/openmediator/mediator/internal/logctx"
	"github.com/openmediator/mediator/queue"
)

// Observer hears of deliveries, for metrics (metrics.Metrics implements
// it). Its methods must be quick and safe for concurrent use.
type Observer interface {
	// Delivered is called once per message written to a wallet, with how it
	// went (one of the Method* values) and how long it had waited since it
	// was queued (queue.Message.ReceivedAt, the database's clock, to now,
	// this instance's clock).
	Delivered(method string, waited time.Duration)
	// Redelivered is called with the number of claimed messages that had
	// been handed out before (queue.Message.Attempts > 1), if any.
	Redelivered(n int)
}

// How a message reached the wallet, as given to Observer.Delivered.
const (
	methodDelivery = "delivery" // pickup 2.0 delivery, answering a delivery-request
	methodLive     = "live"     // pickup 2.0 delivery pushed in live mode
	methodBatch    = "batch"    // pickup 1.0 batch
	methodImplicit = "implicit" // raw envelope pushed on a return-route socket
)

type nopObserver struct{}

func (nopObserver) Delivered(string, time.Duration) {}
func (nopObserver) Redelivered(int)                 {}

// countRedelivered tells the observer how many of msgs, about to be handed
// out, had been handed out before.
func (s *Service) countRedelivered(msgs []queue.Message) {
	again := 0
	for _, m := range msgs {
		if m.Attempts > 1 {
			again++
		}
	}
	if again > 0 {
		s.opts.Observer.Redelivered(again)
	}
}

// delivered reports msgs as written to the wallet.
func (s *Service) delivered(method string, msgs []queue.Message) {
	if len(msgs) == 0 {
		return
	}
	now := s.opts.Now()
	for _, m := range msgs {
		s.opts.Observer.Delivered(method, now.Sub(m.ReceivedAt))
	}
}

// LiveSessionsByProtocol counts the push sessions on this instance by
// protocol (queue.ProtocolLiveV2, queue.ProtocolImplicit).
func (s *Service) LiveSessionsByProtocol() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, 2)
	for _, ls := range s.live {
		out[ls.protocol]++
	}
	return out
}

// pushLogContext gives a push the log attributes of the socket it pushes
// to, not those of the message that woke it (a forward on another session).
func pushLogContext(ctx context.Context, ls *liveSession) context.Context {
	return logctx.Replace(ctx, slog.String("session", ls.conv.Session.ID()),
		slog.String("connection", ls.conv.ConnectionID))
}
