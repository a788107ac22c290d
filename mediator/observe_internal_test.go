package mediator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/openmediator/mediator/queue"
)

type statusErr int

func (e statusErr) Error() string   { return fmt.Sprintf("status %d", int(e)) }
func (e statusErr) HTTPStatus() int { return int(e) }

func TestInboundOutcome(t *testing.T) {
	live := context.Background()
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		ctx  context.Context
		err  error
		want string
	}{
		{live, nil, OutcomeOK},
		{live, badRequest("x"), OutcomeBadRequest},
		{live, &InboundError{Status: http.StatusNotFound, Err: fmt.Errorf("f: %w", queue.ErrUnknownRecipient)}, OutcomeUnknownRecipient},
		{live, fmt.Errorf("wrapped: %w", queue.ErrUnknownRecipient), OutcomeUnknownRecipient},
		{live, statusErr(http.StatusRequestEntityTooLarge), OutcomeTooLarge},
		{live, fmt.Errorf("w: %w", statusErr(http.StatusTooManyRequests)), OutcomeRateLimited},
		{live, &InboundError{Status: http.StatusInsufficientStorage, Err: errors.New("full")}, OutcomeQueueFull},
		{live, statusErr(http.StatusForbidden), OutcomeRefused},
		{live, statusErr(http.StatusServiceUnavailable), OutcomeError},
		{live, errors.New("database down"), OutcomeError},
		{expired, errors.New("context canceled"), OutcomeTimeout},
		{expired, badRequest("x"), OutcomeBadRequest},
	}
	for _, tc := range tests {
		if got := inboundOutcome(tc.ctx, tc.err); got != tc.want {
			t.Errorf("inboundOutcome(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestClip(t *testing.T) {
	if got := clip("short", 10); got != "short" {
		t.Error(got)
	}
	if got := clip("ééééé", 3); got != "é…" {
		t.Errorf("clip on a rune boundary: %q", got)
	}
}
