package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/openmediator/mediator/internal/wallet"
)

// poster posts one sender's forwards. Over http:// it keeps one connection
// of its own per endpoint, writes each request whole and reads the answer
// with http.ReadResponse in the sender's goroutine: net/http's client hands
// every request to its connection's write and read goroutines and back,
// which cost about as much CPU as the mediator spends answering, on a
// machine the load generator shares with the mediator and PostgreSQL.
// https:// endpoints go through client.
type poster struct {
	client *http.Client // for https://; its Timeout bounds every request
	dialer net.Dialer
	conns  map[string]*postConn // by endpoint
	head   []byte               // request head scratch
	rd     bytes.Reader         // body reader for client
}

// postConn is a keep-alive connection to one endpoint.
type postConn struct {
	conn       net.Conn
	br         *bufio.Reader
	host, path string
	used       time.Time // when its last answer came
}

// maxIdle is how long a connection may sit unused before post dials a new
// one rather than risk one the server (or a proxy) closed meanwhile, which
// would fail the forward that finds it.
const maxIdle = 20 * time.Second

func newPoster(client *http.Client) *poster {
	return &poster{client: client, dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		conns: map[string]*postConn{}}
}

// post sends body and reads the whole answer, so the connection is reused.
// Any status but 202 is an error.
func (p *poster) post(ctx context.Context, endpoint string, body []byte) error {
	pc, err := p.conn(ctx, endpoint)
	if err != nil {
		return err
	}
	if pc == nil {
		return p.postViaClient(ctx, endpoint, body)
	}
	keep, err := p.roundTrip(ctx, pc, body)
	if !keep {
		p.drop(endpoint)
	}
	return err
}

// conn returns the endpoint's connection, dialling it if needed; nil for
// endpoints that are not plain http://.
func (p *poster) conn(ctx context.Context, endpoint string) (*postConn, error) {
	if pc, ok := p.conns[endpoint]; ok {
		if time.Since(pc.used) < maxIdle {
			return pc, nil
		}
		p.drop(endpoint)
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, nil
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	c, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("post %s: %w", endpoint, err)
	}
	pc := &postConn{conn: c, br: bufio.NewReaderSize(c, 4096), host: u.Host, path: u.RequestURI(), used: time.Now()}
	if p.conns == nil {
		p.conns = map[string]*postConn{}
	}
	p.conns[endpoint] = pc
	return pc, nil
}

func (p *poster) drop(endpoint string) {
	if pc, ok := p.conns[endpoint]; ok {
		_ = pc.conn.Close()
		delete(p.conns, endpoint)
	}
}

// close closes the poster's connections.
func (p *poster) close() {
	for endpoint := range p.conns {
		p.drop(endpoint)
	}
}

// roundTrip posts body on pc; keep is false when pc cannot carry another
// request.
func (p *poster) roundTrip(ctx context.Context, pc *postConn, body []byte) (keep bool, err error) {
	deadline := time.Time{}
	if p.client != nil && p.client.Timeout > 0 {
		deadline = time.Now().Add(p.client.Timeout)
	}
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	if err := pc.conn.SetDeadline(deadline); err != nil {
		return false, err
	}
	// A run that is stopped does not wait for the answer.
	stop := context.AfterFunc(ctx, func() { _ = pc.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	p.head = append(p.head[:0], "POST "...)
	p.head = append(p.head, pc.path...)
	p.head = append(p.head, " HTTP/1.1\r\nHost: "...)
	p.head = append(p.head, pc.host...)
	p.head = append(p.head, "\r\nContent-Type: "...)
	p.head = append(p.head, wallet.ContentType...)
	p.head = append(p.head, "\r\nContent-Length: "...)
	p.head = strconv.AppendInt(p.head, int64(len(body)), 10)
	p.head = append(p.head, "\r\n\r\n"...)
	bufs := net.Buffers{p.head, body}
	if _, err := bufs.WriteTo(pc.conn); err != nil {
		return false, transportErr(ctx, err)
	}
	resp, err := http.ReadResponse(pc.br, nil)
	// Informational answers (100 Continue, 103 Early Hints) precede the
	// real one.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(pc.br, nil)
	}
	if err != nil {
		return false, transportErr(ctx, err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return false, fmt.Errorf("unexpected %s", resp.Status)
	}
	drained, err := answer(resp)
	pc.used = time.Now()
	return drained && !resp.Close, err
}

// transportErr names the run's end rather than a broken connection when
// that is what cut the request short.
func transportErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// answer reads resp's body to the end (drained reports whether it got
// there) and turns a status other than 202 into a *wallet.StatusError.
func answer(resp *http.Response) (drained bool, err error) {
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted {
		_, err := io.Copy(io.Discard, resp.Body)
		return err == nil, err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, rest := io.Copy(io.Discard, resp.Body)
	return rest == nil, &wallet.StatusError{Code: resp.StatusCode, Body: string(msg)}
}

func (p *poster) postViaClient(ctx context.Context, endpoint string, body []byte) error {
	p.rd.Reset(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, &p.rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", wallet.ContentType)
	req.ContentLength = int64(len(body))
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, err = answer(resp)
	return err
}
