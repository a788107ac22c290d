package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/openmediator/mediator/internal/wallet"
)

// postServer answers POSTs on /in with the status the body names ("202",
// "500", "close": 202 with Connection: close), and counts the connections
// it saw and the bodies it got.
type postServer struct {
	*httptest.Server
	mu     sync.Mutex
	conns  map[string]bool
	bodies []string
	ctypes []string
}

func newPostServer(t *testing.T) *postServer {
	s := &postServer{conns: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.conns[r.RemoteAddr] = true
		s.bodies = append(s.bodies, string(b))
		s.ctypes = append(s.ctypes, r.Header.Get("Content-Type"))
		s.mu.Unlock()
		switch {
		case r.Method != http.MethodPost || r.URL.Path != "/in":
			http.Error(w, "wrong request", http.StatusBadRequest)
		case string(b) == "500":
			http.Error(w, "broken", http.StatusInternalServerError)
		case string(b) == "close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusAccepted)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *postServer) seen() (conns int, bodies []string, ctypes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns), append([]string(nil), s.bodies...), append([]string(nil), s.ctypes...)
}

func TestPosterReusesItsConnection(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bodies    []string
		wantErrs  []int // status of the StatusError per post; 0: success
		wantConns int
	}{
		{"accepted", []string{"a", "b", "c"}, []int{0, 0, 0}, 1},
		{"an error answer keeps the connection", []string{"a", "500", "b"}, []int{0, 500, 0}, 1},
		{"the server closes it", []string{"a", "close", "b", "c"}, []int{0, 0, 0, 0}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newPostServer(t)
			p := newPoster(&http.Client{Timeout: 5 * time.Second})
			defer p.close()
			for i, body := range tc.bodies {
				err := p.post(t.Context(), srv.URL+"/in", []byte(body))
				var se *wallet.StatusError
				switch {
				case tc.wantErrs[i] == 0 && err != nil:
					t.Errorf("post %d (%s): %v", i, body, err)
				case tc.wantErrs[i] != 0 && (!errors.As(err, &se) || se.Code != tc.wantErrs[i] || se.Body != "broken\n"):
					t.Errorf("post %d (%s) = %v, want HTTP %d with its body", i, body, err, tc.wantErrs[i])
				}
			}
			conns, bodies, ctypes := srv.seen()
			if conns != tc.wantConns {
				t.Errorf("%d connections, want %d", conns, tc.wantConns)
			}
			if len(bodies) != len(tc.bodies) {
				t.Fatalf("server got %q, want %q", bodies, tc.bodies)
			}
			for i := range bodies {
				if bodies[i] != tc.bodies[i] || ctypes[i] != wallet.ContentType {
					t.Errorf("request %d: body %q, content type %q; want %q, %q", i, bodies[i], ctypes[i], tc.bodies[i], wallet.ContentType)
				}
			}
		})
	}
}

// A connection the server dropped fails the post that finds it broken (a
// forward is not sent twice), and the next post dials again.
func TestPosterRedialsAfterABrokenConnection(t *testing.T) {
	srv := newPostServer(t)
	p := newPoster(&http.Client{Timeout: 5 * time.Second})
	defer p.close()
	if err := p.post(t.Context(), srv.URL+"/in", []byte("a")); err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections()
	if err := p.post(t.Context(), srv.URL+"/in", []byte("b")); err == nil {
		t.Fatal("post on a connection the server closed succeeded")
	}
	if err := p.post(t.Context(), srv.URL+"/in", []byte("c")); err != nil {
		t.Fatalf("post after redialling: %v", err)
	}
	if conns, bodies, _ := srv.seen(); conns != 2 || len(bodies) != 2 || bodies[1] != "c" {
		t.Errorf("server saw %d connections and bodies %q, want 2 and [a c]", conns, bodies)
	}
}

// A post waits at most the client's timeout, and no longer than its
// context.
func TestPosterDeadlines(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts and never answers
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	endpoint := "http://" + ln.Addr().String() + "/in"

	p := newPoster(&http.Client{Timeout: 200 * time.Millisecond})
	defer p.close()
	start := time.Now()
	var ne net.Error
	if err := p.post(t.Context(), endpoint, []byte("a")); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("post to a silent server = %v, want a timeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("timed out after %v, want about 200ms", took)
	}

	p = newPoster(&http.Client{Timeout: time.Minute})
	defer p.close()
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	if err := p.post(ctx, endpoint, []byte("a")); !errors.Is(err, context.Canceled) {
		t.Errorf("post cancelled meanwhile = %v, want context.Canceled", err)
	}
}

// Informational answers before the real one are skipped: every post gets
// its own answer, not the one of the post before.
func TestPosterSkipsInformationalAnswers(t *testing.T) {
	var (
		mu     sync.Mutex
		bodies []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		if string(b) == "500" {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	p := newPoster(&http.Client{Timeout: 5 * time.Second})
	defer p.close()
	for _, tc := range []struct {
		body string
		want int // 0: accepted
	}{{"a", 0}, {"500", 500}, {"b", 0}} {
		err := p.post(t.Context(), srv.URL+"/in", []byte(tc.body))
		var se *wallet.StatusError
		if (tc.want == 0 && err != nil) || (tc.want != 0 && (!errors.As(err, &se) || se.Code != tc.want)) {
			t.Errorf("post %q = %v, want status %d", tc.body, err, tc.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 3 {
		t.Errorf("server got %q, want 3 posts", bodies)
	}
}
