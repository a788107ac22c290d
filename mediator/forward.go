package mediator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/queue"
)

// maxForwardDepth bounds nested forwards addressed to our own routing key.
const maxForwardDepth = 3

type forward struct {
	To  string          `json:"to"`
	Msg json.RawMessage `json:"msg"`
}

// handleForward queues the inner message for the wallet that registered
// the `to` key (QueueOnly), then lets pickup push it if the wallet is live.
// With ForwardDirectThenQueue it first tries to deliver it to the
// recipient's own endpoint (see Forwarding). A full queue is 507 (see
// Limits).
func (a *Agent) handleForward(ctx context.Context, in *inbound, depth int) error {
	var fwd forward
	if err := in.msg.Decode(&fwd); err != nil {
		return badRequest("mediator: forward: %w", err)
	}
	payload, err := innerMessage(fwd.Msg)
	if err != nil {
		return badRequest("mediator: forward: %w", err)
	}
	to, err := diddoc.NormalizeVerkey(fwd.To)
	if err != nil {
		return badRequest("mediator: forward: bad to %q: %w", clip(fwd.To, maxLogTypeLen), err)
	}
	if to == a.RoutingVerkey() {
		// The sender used our routing key twice (several routing keys that are
		// all ours): unwrap the next layer.
		if depth >= maxForwardDepth {
			return badRequest("mediator: forward nested too deeply")
		}
		return a.handlePacked(ctx, payload, nil, depth+1)
	}
	if a.deliverDirect(ctx, to, payload) {
		return nil
	}
	res, err := a.queue.EnqueueForward(ctx, to, payload)
	if errors.Is(err, queue.ErrUnknownRecipient) {
		a.log.WarnContext(ctx, "forward for unknown recipient key refused", "to", to)
		return &InboundError{Status: http.StatusNotFound, Err: fmt.Errorf("mediator: forward: %w", err)}
	}
	if err != nil {
		return a.queueFailed(ctx, "forward", "to", to, err)
	}
	ctx = a.forwardAccepted(ctx, res)
	a.log.DebugContext(ctx, "forward queued", "connection", res.ConnectionID, "message_id", res.ID,
		"bytes", len(payload), "live_instance", res.LiveInstance)
	a.afterEnqueue(ctx, res)
	return nil
}

// innerMessage returns the packed message of a forward as JSON object bytes;
// some agents send it as a JSON string holding the object.
func innerMessage(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New("missing msg")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("msg: %w", err)
		}
		raw = json.RawMessage(s)
	}
	if raw[0] != '{' || !json.Valid(raw) {
		return nil, errors.New("msg is not a packed message (JSON object)")
	}
	return raw, nil
}
