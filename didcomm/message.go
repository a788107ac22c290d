// Package didcomm is the DIDComm v1 plaintext message model shared by the
// mediator's protocol handlers: type URIs, ids, decorators and replies.
package didcomm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/hyperledger/aries-framework-go/pkg/didcomm/protocol/decorator"

	"github.com/openmediator/mediator/internal/jsonscan"
)

// Document-URI prefixes of message types. Both are accepted on input; the
// legacy one is normalised away right after parsing.
const (
	PrefixHTTPS = "https://didcomm.org/"
	PrefixSov   = "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/"
)

// Return-route values of the ~transport decorator (RFC 0092).
const (
	ReturnRouteNone   = "none"
	ReturnRouteAll    = "all"
	ReturnRouteThread = "thread"
)

// ErrInvalidMessage wraps every reason a plaintext message is refused.
var ErrInvalidMessage = errors.New("didcomm: invalid message")

// Transport is the RFC 0092 ~transport decorator. (aries-framework-go's
// decorator.Transport uses a pre-RFC field layout that Credo does not send.)
type Transport struct {
	ReturnRoute       string `json:"return_route,omitempty"`
	ReturnRouteThread string `json:"return_route_thread,omitempty"`
}

// Header is the part every message shares; protocol messages embed it.
type Header struct {
	Type      string            `json:"@type"`
	ID        string            `json:"@id"`
	Thread    *decorator.Thread `json:"~thread,omitempty"`
	Transport *Transport        `json:"~transport,omitempty"`
}

// MessageType is a parsed type URI: <prefix><protocol>/<major>.<minor>/<name>.
type MessageType struct {
	Protocol string // e.g. "messagepickup"
	Major    int
	Minor    int
	Name     string // e.g. "delivery-request"
}

// Key identifies a message for dispatch regardless of minor version, as
// RFC 0003 asks: "messagepickup/2/delivery-request".
func (t MessageType) Key() string {
	return t.Protocol + "/" + strconv.Itoa(t.Major) + "/" + t.Name
}

// URI renders the type with the https prefix and the given minor version.
func (t MessageType) URI() string {
	return fmt.Sprintf("%s%s/%d.%d/%s", PrefixHTTPS, t.Protocol, t.Major, t.Minor, t.Name)
}

// PIURI is the protocol identifier without the message name.
func (t MessageType) PIURI() string {
	return fmt.Sprintf("%s%s/%d.%d", PrefixHTTPS, t.Protocol, t.Major, t.Minor)
}

// ParseType splits a type URI, accepting both prefixes.
func ParseType(uri string) (MessageType, error) {
	rest, ok := strings.CutPrefix(NormalizeType(uri), PrefixHTTPS)
	if !ok {
		return MessageType{}, fmt.Errorf("%w: unknown type prefix in %q", ErrInvalidMessage, uri)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
		return MessageType{}, fmt.Errorf("%w: malformed type %q", ErrInvalidMessage, uri)
	}
	majorText, minorText, ok := strings.Cut(parts[1], ".")
	if !ok {
		return MessageType{}, fmt.Errorf("%w: malformed version in %q", ErrInvalidMessage, uri)
	}
	major, err1 := strconv.Atoi(majorText)
	minor, err2 := strconv.Atoi(minorText)
	if err1 != nil || err2 != nil || major < 0 || minor < 0 {
		return MessageType{}, fmt.Errorf("%w: malformed version in %q", ErrInvalidMessage, uri)
	}
	return MessageType{Protocol: parts[0], Major: major, Minor: minor, Name: parts[2]}, nil
}

// NormalizeType replaces the legacy did:sov document URI with the https one.
func NormalizeType(uri string) string {
	if rest, ok := strings.CutPrefix(uri, PrefixSov); ok {
		return PrefixHTTPS + rest
	}
	return uri
}

// Message is an inbound plaintext message: its header, parsed type and the
// raw JSON for the handler to decode its own fields from.
type Message struct {
	Header
	MsgType MessageType
	Raw     []byte
}

// Parse decodes a plaintext message. It needs a JSON object with a string
// @type in a known form; a missing @id is tolerated (some agents omit it on
// forwards) and replaced so that replies can still thread to it.
func Parse(plaintext []byte) (*Message, error) {
	trimmed := bytes.TrimSpace(plaintext)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidMessage)
	}
	var h Header
	if !jsonscan.Valid(trimmed) || !scanHeader(trimmed, &h) {
		h = Header{}
		if err := json.Unmarshal(trimmed, &h); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
		}
	}
	if h.Type == "" {
		return nil, fmt.Errorf("%w: missing @type", ErrInvalidMessage)
	}
	t, err := ParseType(h.Type)
	if err != nil {
		return nil, err
	}
	h.Type = NormalizeType(h.Type)
	if h.ID == "" {
		h.ID = uuid.NewString()
	}
	return &Message{Header: h, MsgType: t, Raw: trimmed}, nil
}

// scanHeader is Parse's fast path for the header of b, a valid JSON object:
// json.Unmarshal of the whole message would decode it a second time, with
// reflection, just to skip the fields it has no use for (a forward's inner
// message is most of one). Only the decorators are decoded, by
// json.Unmarshal. Anything unusual (an escaped, non-ASCII or differently
// cased key that json.Unmarshal might match to a header field, a field
// given twice, an @type or @id that is not a plain string) reports false,
// and Parse leaves the message to json.Unmarshal: the header is always the
// one json.Unmarshal gives. Header's fields are all here (see
// TestScanHeaderCoversHeader).
func scanHeader(b []byte, h *Header) bool {
	var seen [4]bool
	return jsonscan.Object(b, func(key, v []byte) bool {
		switch string(key) {
		case "@type":
			return jsonscan.Once(&seen[0]) && jsonscan.StringInto(&h.Type, v)
		case "@id":
			return jsonscan.Once(&seen[1]) && jsonscan.StringInto(&h.ID, v)
		case "~thread":
			return jsonscan.Once(&seen[2]) && json.Unmarshal(v, &h.Thread) == nil
		case "~transport":
			return jsonscan.Once(&seen[3]) && json.Unmarshal(v, &h.Transport) == nil
		}
		return !jsonscan.MightFoldAny(key, "@type", "@id", "~thread", "~transport")
	})
}

// Decode unmarshals the message's fields into v.
func (m *Message) Decode(v any) error {
	if err := json.Unmarshal(m.Raw, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidMessage, m.MsgType.Key(), err)
	}
	return nil
}

// ThreadID is ~thread.thid, or the message's own @id when it starts a thread.
func (m *Message) ThreadID() string {
	if m.Thread != nil && m.Thread.ID != "" {
		return m.Thread.ID
	}
	return m.ID
}

// ParentThreadID is ~thread.pthid, if any.
func (m *Message) ParentThreadID() string {
	if m.Thread != nil {
		return m.Thread.PID
	}
	return ""
}

// ReturnRoute is the requested return route, "none" when absent.
func (m *Message) ReturnRoute() string {
	if m.Transport == nil || m.Transport.ReturnRoute == "" {
		return ReturnRouteNone
	}
	return m.Transport.ReturnRoute
}

// AllowsReplyOnThread says whether a reply on thread thid may go back on the
// transport this message arrived on.
func (m *Message) AllowsReplyOnThread(thid string) bool {
	switch m.ReturnRoute() {
	case ReturnRouteAll:
		return true
	case ReturnRouteThread:
		want := m.Transport.ReturnRouteThread
		if want == "" {
			want = m.ThreadID()
		}
		return want == thid
	default:
		return false
	}
}

// ReplyThreadID is the thread an outbound message belongs to ("" when it
// starts none); it decides whether a return_route "thread" transport may
// carry it.
func (h Header) ReplyThreadID() string {
	if h.Thread != nil && h.Thread.ID != "" {
		return h.Thread.ID
	}
	return h.ID
}

// NewHeader starts an outbound message of type uri with a fresh @id.
func NewHeader(uri string) Header {
	return Header{Type: uri, ID: uuid.NewString()}
}

// ReplyHeader starts a reply to m of type uri, threaded to m.
func ReplyHeader(uri string, m *Message) Header {
	h := NewHeader(uri)
	h.Thread = &decorator.Thread{ID: m.ThreadID(), PID: m.ParentThreadID()}
	return h
}
