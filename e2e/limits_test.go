package e2e

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openmediator/mediator/internal/wallet"
)

// --max-message-bytes bites end to end: a real forward under the limit is
// queued and picked up; the same forward with a payload that takes it over
// gets 413 over HTTP, and a WebSocket that sends it is closed with 1009
// and a reason that states the limit.
func TestMaxMessageBytesEndToEnd(t *testing.T) {
	const limit = 4096
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := startMediator(t, "MEDIATOR_DATABASE_URL=", "MEDIATOR_MASTER_KEY=",
		"MEDIATOR_MAX_MESSAGE_BYTES=4096")
	recipient := connectedRecipient(ctx, t, getInvitation(t, m.base))
	sender, err := wallet.NewSender()
	if err != nil {
		t.Fatal(err)
	}
	basic := func(content string) []byte {
		return []byte(`{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"x1234567","content":"` + content + `"}`)
	}
	small := basic("fits")
	if _, err := sender.Forward(ctx, recipient.GrantEndpoint, recipient.RoutingKeys[0], recipient.Verkey(), small); err != nil {
		t.Fatalf("forward under the limit: %v", err)
	}

	big, err := sender.PackForward(recipient.RoutingKeys[0], recipient.Verkey(), basic(strings.Repeat("x", limit)))
	if err != nil {
		t.Fatal(err)
	}
	if len(big) <= limit {
		t.Fatalf("packed forward is %d bytes, want over %d", len(big), limit)
	}
	resp, err := http.Post(recipient.GrantEndpoint, "application/didcomm-envelope-enc", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST of %d bytes = %d, want 413", len(big), resp.StatusCode)
	}

	c, wsResp, err := websocket.DefaultDialer.DialContext(ctx, m.wsURL(), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	wsResp.Body.Close()
	defer c.Close()
	if err := c.WriteMessage(websocket.BinaryMessage, big); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig || !strings.Contains(ce.Text, "4096") {
		t.Errorf("WebSocket after %d bytes: %v; want close 1009 stating the limit", len(big), err)
	}

	// Nothing of the refused copies was queued: only the small one.
	got, err := recipient.PickupHTTP(ctx, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("pickup: %d messages, %v; want the one under the limit", len(got), err)
	}
	if p := openInner(t, recipient, got[0].Payload); !bytes.Equal(p, small) {
		t.Errorf("delivered %q, want %q", p, small)
	}
}
