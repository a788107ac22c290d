package didcomm

import "github.com/hyperledger/aries-framework-go/pkg/didcomm/protocol/decorator"

// Problem-report type URIs.
const (
	TypeProblemReport             = PrefixHTTPS + "report-problem/1.0/problem-report"
	TypeNotificationProblemReport = PrefixHTTPS + "notification/1.0/problem-report"
	TypeAck                       = PrefixHTTPS + "notification/1.0/ack"
)

// Description is the RFC 0035 problem description.
type Description struct {
	Code string `json:"code"`
	En   string `json:"en,omitempty"`
}

// ProblemReport is an RFC 0035 problem report (any of the protocol-specific
// @types shares this shape).
type ProblemReport struct {
	Header
	Description Description `json:"description"`
	Impact      string      `json:"impact,omitempty"`
	WhoRetries  string      `json:"who_retries,omitempty"`
}

// NewProblemReport builds a problem report of type uri threaded to m. When
// asParent is true the offending message becomes the parent thread (the form
// RFC 0685 uses for live-mode refusals).
func NewProblemReport(uri string, m *Message, code, text string, asParent bool) ProblemReport {
	h := NewHeader(uri)
	if asParent {
		h.Thread = &decorator.Thread{PID: m.ID}
	} else {
		h.Thread = &decorator.Thread{ID: m.ThreadID(), PID: m.ParentThreadID()}
	}
	return ProblemReport{Header: h, Description: Description{Code: code, En: text}}
}

// IsProblemReport tells whether a message is any kind of problem report,
// which must never be answered with another one.
func (t MessageType) IsProblemReport() bool {
	return t.Name == "problem-report" || t.Name == "problem_report"
}
