package mediator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/internal/jsonscan"
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
	fwd, err := decodeForward(in.msg)
	if err != nil {
		return badRequest("mediator: forward: %w", err)
	}
	payload, err := innerMessage(fwd.Msg)
	if err != nil {
		return badRequest("mediator: forward: %w", err)
	}
	to, err := diddoc.RouteVerkey(fwd.To)
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
	if errors.Is(err, queue.ErrInvalidPayload) {
		// encoding/json lets bytes that are not UTF-8 through in strings.
		return badRequest("mediator: forward: msg: %w", err)
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
// some agents send it as a JSON string holding the object. raw is a value
// taken from the forward's plaintext, which is valid JSON (didcomm.Parse
// checked it): an object in it needs no second check, the text of a string
// does.
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
		if len(raw) == 0 || !jsonscan.Valid(raw) {
			raw = nil
		}
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errors.New("msg is not a packed message (JSON object)")
	}
	return raw, nil
}

// decodeForward reads a forward's "to" and "msg", as m.Decode into a
// forward would, but faster: m.Raw is a JSON object that didcomm.Parse has
// already checked, so one walk over its top level finds the two values,
// where json.Unmarshal would check the whole text again and then decode it
// (the inner message is most of it). Anything unusual (a key that is
// escaped, not ASCII or differs in case, a "to" that is not a plain
// string, text that is not a well-formed object after all) is left to
// json.Unmarshal, so the result is always the same as its.
func decodeForward(m *didcomm.Message) (forward, error) {
	if f, ok := scanForward(m.Raw); ok {
		return f, nil
	}
	var f forward
	err := m.Decode(&f)
	return f, err
}

// scanForward is decodeForward's fast path; ok is false when it cannot
// vouch for giving json.Unmarshal's answer.
func scanForward(b []byte) (f forward, ok bool) {
	var to string
	ok = jsonscan.Object(b, func(key, v []byte) bool {
		switch {
		case string(key) == "to":
			// null leaves "to" as it is, as json.Unmarshal does. Every
			// "to" is checked: json.Unmarshal fails on any of the wrong
			// kind, even if a later one is fine.
			return jsonscan.StringInto(&to, v)
		case string(key) == "msg":
			f.Msg = v
			return true
		default:
			return !jsonscan.MightFoldAny(key, "to", "msg")
		}
	})
	if !ok {
		return forward{}, false
	}
	f.To = to
	return f, true
}
