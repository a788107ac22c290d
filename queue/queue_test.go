package queue_test

import (
	"errors"
	"testing"

	"github.com/openmediator/mediator/queue"
)

func TestCheckPayload(t *testing.T) {
	for _, tc := range []struct {
		payload string
		want    error
	}{
		{`{"protected":"eyJ","iv":"aXY","ciphertext":"Y3Q","tag":"dGFn"}`, nil},
		{`{"text":"\u0000 and 1e131071"}`, nil},
		{`{"text":"é"}`, nil},
		{"{\"text\":\"\xff\"}", queue.ErrInvalidPayload}, // JSON, but not UTF-8
		{`{"text":}`, queue.ErrInvalidPayload},
		{``, queue.ErrInvalidPayload},
	} {
		if err := queue.CheckPayload([]byte(tc.payload)); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("CheckPayload(%q) = %v, want %v", tc.payload, err, tc.want)
		}
	}
}
