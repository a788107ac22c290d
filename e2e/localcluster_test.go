package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openmediator/mediator/diddoc"
	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/internal/wallet"
)

// localCluster is what scripts/cluster.sh --detach started: N `mediator
// serve` processes behind Debian's nginx, described by DIR/cluster.env.
type localCluster struct {
	dir       string
	env       map[string]string
	proxy     string   // nginx, http
	ws        string   // nginx, ws
	dbURL     string   // the cluster's database
	bin       string   // the mediator binary the script built
	instances []string // each instance's own http URL (host:port as nginx logs it)
	admins    []string // each instance's admin listener
	accessLog string   // nginx access log ($upstream_addr per request)
}

// clusterScriptNoNginx is cluster.sh's exit status when nginx is neither
// installed nor installable (not root, no apt-get, or apt-get failed).
const clusterScriptNoNginx = 3

// startLocalCluster runs scripts/cluster.sh --detach with n instances and
// stops it (dropping its database) when t ends. It skips t only when the
// script reports that nginx cannot be had, quoting the script's reason.
func startLocalCluster(t *testing.T, n int) *localCluster {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "scripts", "cluster.sh"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cluster")
	// Registered first, so it runs after the log dump below; it stops
	// whatever was started, even if start itself failed half-way.
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(dir, "cluster.env")); err != nil {
			return // nothing started, or start already cleaned up after itself
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		out, err := clusterCommand(ctx, script, "stop", "--dir", dir).CombinedOutput()
		if err != nil {
			t.Errorf("scripts/cluster.sh stop: %v\n%s", err, out)
		}
	})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "logs", "mediator-*.log"))
		for _, f := range append(logs, filepath.Join(dir, "nginx", "error.log")) {
			if b, err := os.ReadFile(f); err == nil {
				t.Logf("--- %s (last 4 KiB) ---\n%s", f, tail(b, 4096))
			}
		}
	})

	// Generous: a first run may install nginx with apt-get and build the binary.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := clusterCommand(ctx, script, "--detach", "--dir", dir, "--instances", strconv.Itoa(n), "--timeout", "90")
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == clusterScriptNoNginx {
			t.Skipf("skipping the local-cluster test: scripts/cluster.sh cannot get nginx on this machine "+
				"(it installs Debian's nginx-light with apt-get only when run as root); its words:\n%s", out)
		}
		t.Fatalf("scripts/cluster.sh --detach: %v\n%s", err, out)
	}
	t.Logf("scripts/cluster.sh --detach:\n%s", out)

	env, err := readEnvFile(filepath.Join(dir, "cluster.env"))
	if err != nil {
		t.Fatal(err)
	}
	c := &localCluster{dir: dir, env: env, proxy: env["PROXY_URL"], ws: env["WS_URL"], dbURL: env["DATABASE_URL"],
		bin: env["MEDIATOR_BIN"], admins: strings.Fields(env["ADMIN_URLS"]), accessLog: env["NGINX_ACCESS_LOG"]}
	for _, u := range strings.Fields(env["INSTANCE_URLS"]) {
		c.instances = append(c.instances, strings.TrimPrefix(u, "http://"))
	}
	for k, v := range map[string]string{"PROXY_URL": c.proxy, "WS_URL": c.ws, "DATABASE_URL": c.dbURL,
		"MEDIATOR_BIN": c.bin, "NGINX_ACCESS_LOG": c.accessLog, "INVITATION_URL": env["INVITATION_URL"]} {
		if v == "" {
			t.Fatalf("cluster.env has no %s:\n%v", k, env)
		}
	}
	if len(c.instances) != n || len(c.admins) != n || len(strings.Fields(env["PIDS"])) != n {
		t.Fatalf("cluster.env describes %d instances, %d admin URLs and pids %q; want %d", len(c.instances), len(c.admins), env["PIDS"], n)
	}
	return c
}

// clusterCommand runs the script with the test's environment minus any
// MEDIATOR_* setting (the instances must not pick up a developer's own),
// and with SIGTERM on cancellation so that the script's cleanup runs.
func clusterCommand(ctx context.Context, script string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEDIATOR_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// The script's PostgreSQL is the tests' one.
	cmd.Env = append(cmd.Env, pgtest.EnvServerURL+"="+pgtest.ServerURL())
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 60 * time.Second
	return cmd
}

// readEnvFile parses cluster.env: KEY='value' lines, where a quote inside a
// value is written as the shell writes it (quote, backslash, quote, quote).
func readEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSuffix(strings.TrimPrefix(v, "'"), "'")
		env[k] = strings.ReplaceAll(v, `'\''`, `'`)
	}
	return env, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// adminEnv is the environment for a mediator admin command: the test's,
// minus MEDIATOR_* settings.
func adminEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEDIATOR_") {
			env = append(env, kv)
		}
	}
	return env
}

// accessLogSize is the current length of nginx's access log.
func (c *localCluster) accessLogSize(t *testing.T) int64 {
	t.Helper()
	fi, err := os.Stat(c.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

var upstreamRE = regexp.MustCompile(` upstream=(\S+) us=(\S+)`)

// upstreamsOfPosts counts the POST requests nginx logged after offset, by
// the instance ($upstream_addr) that answered them.
func (c *localCluster) upstreamsOfPosts(t *testing.T, offset int64) map[string]int {
	t.Helper()
	f, err := os.Open(c.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `"POST `) {
			continue
		}
		m := upstreamRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("access log line without upstream: %s", line)
		}
		got[m[1]]++
	}
	return got
}

// contentCollector reads a live socket, acknowledges every delivery and
// counts each delivered message by the @id of its inner plaintext, so that
// "exactly once" is about the messages sent, not about queue ids.
type contentCollector struct {
	w    *wallet.Wallet
	mu   sync.Mutex
	seen map[string]int
	errs []error
}

func (c *contentCollector) run(sock *wallet.Socket) {
	for {
		m, err := sock.Receive(60 * time.Second)
		if err != nil {
			return
		}
		switch m.MsgType.Key() {
		case "messagepickup/2/delivery":
			items, err := wallet.ParseDelivery(m)
			if err != nil {
				c.fail(fmt.Errorf("delivery: %w", err))
				return
			}
			ids := make([]string, len(items))
			for i, it := range items {
				ids[i] = it.ID
				inner, _, err := c.w.Unpack(it.Payload)
				if err != nil {
					c.fail(fmt.Errorf("open delivered message %s: %w", it.ID, err))
					continue
				}
				c.mu.Lock()
				c.seen[inner.ID]++
				c.mu.Unlock()
			}
			_ = sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/messages-received",
				"@id": uuid.NewString(), "message_id_list": ids})
		case "messagepickup/2/status":
			var st struct {
				MessageCount int `json:"message_count"`
			}
			if m.Decode(&st) == nil && st.MessageCount > 0 {
				_ = sock.Send(map[string]any{"@type": "https://didcomm.org/messagepickup/2.0/delivery-request",
					"@id": uuid.NewString(), "limit": 10})
			}
		}
	}
}

func (c *contentCollector) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
}

func (c *contentCollector) snapshot() (map[string]int, []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.seen))
	for k, v := range c.seen {
		out[k] = v
	}
	return out, append([]error(nil), c.errs...)
}

// sendForwards posts n basic messages for w through endpoint and returns
// their @ids.
func sendForwards(ctx context.Context, t *testing.T, s *wallet.Sender, endpoint string, w *wallet.Wallet, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		plain := []byte(fmt.Sprintf(`{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":%q,"content":"msg-%d"}`, ids[i], i))
		if _, err := s.Forward(ctx, endpoint, w.RoutingKeys[0], w.Verkey(), plain); err != nil {
			t.Fatalf("forward %d through %s: %v", i, endpoint, err)
		}
	}
	return ids
}

// TestLocalClusterThroughNginx plays wallets against scripts/cluster.sh:
// two instances on one database behind Debian's nginx with no stickiness.
// Everything goes through nginx: the invitation, DID Exchange, mediation,
// the live WebSocket and every forward, so requests alternate between the
// instances and a forward accepted on one must reach the socket held by the
// other.
func TestLocalClusterThroughNginx(t *testing.T) {
	c := startLocalCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The invitation nginx serves is the one the script recorded, and it
	// sends wallets to nginx, never to an instance.
	inv := getInvitation(t, c.proxy)
	recorded, err := wallet.ParseInvitationURL(c.env["INVITATION_URL"])
	if err != nil || recorded.ID != inv.ID {
		t.Fatalf("INVITATION_URL in cluster.env: %v, id %q, want %q", err, recorded.ID, inv.ID)
	}
	var endpoints []string
	for _, s := range inv.Services {
		endpoints = append(endpoints, s.ServiceEndpoint)
	}
	if strings.Join(endpoints, " ") != c.proxy+" "+c.ws {
		t.Fatalf("invitation endpoints %v, want nginx's %s and %s", endpoints, c.proxy, c.ws)
	}

	// A wallet connects, gets mediation and registers its key through nginx.
	recipient := connectedRecipient(ctx, t, inv)
	if recipient.GrantEndpoint != c.proxy || recipient.WSEndpoint != c.ws {
		t.Fatalf("grant endpoint %q, ws endpoint %q: want nginx's %s and %s", recipient.GrantEndpoint, recipient.WSEndpoint, c.proxy, c.ws)
	}

	// A live WebSocket through nginx, held by whichever instance nginx chose.
	sock := liveSocket(t, ctx, recipient, c.ws)
	col := &contentCollector{w: recipient, seen: map[string]int{}}
	go col.run(sock)

	// Forwards through nginx: round robin puts half of them on each instance.
	const live = 40
	sender, err := wallet.NewSender()
	if err != nil {
		t.Fatal(err)
	}
	offset := c.accessLogSize(t)
	sent := sendForwards(ctx, t, sender, c.proxy, recipient, live)
	var byUpstream map[string]int
	waitFor(t, 10*time.Second, "nginx to log the forwards", func() bool {
		byUpstream = c.upstreamsOfPosts(t, offset)
		total := 0
		for _, n := range byUpstream {
			total += n
		}
		return total >= live
	})
	t.Logf("forwards by instance (nginx $upstream_addr): %v", byUpstream)
	for _, inst := range c.instances {
		if n := byUpstream[inst]; n < live*2/5 || n > live*3/5 {
			t.Errorf("instance %s accepted %d of %d forwards: not round robin (by upstream: %v)", inst, n, live, byUpstream)
		}
	}
	if len(byUpstream) != len(c.instances) {
		t.Errorf("forwards went to %v, want exactly the instances %v", byUpstream, c.instances)
	}

	// Every message arrives on the socket exactly once, and the queue empties.
	waitFor(t, 30*time.Second, fmt.Sprintf("%d messages on the live socket through nginx", live), func() bool {
		seen, _ := col.snapshot()
		return len(seen) >= live
	})
	time.Sleep(500 * time.Millisecond) // room for a duplicate to show up
	seen, errs := col.snapshot()
	for _, err := range errs {
		t.Error(err)
	}
	for _, id := range sent {
		if seen[id] != 1 {
			t.Errorf("message %s delivered %d times, want 1", id, seen[id])
		}
	}
	if len(seen) != live {
		t.Errorf("%d distinct messages delivered, want %d", len(seen), live)
	}
	waitFor(t, 10*time.Second, "an empty queue after the live deliveries", func() bool { return queueRows(t, c.dbURL) == 0 })

	// A second wallet, offline: its messages wait in the queue.
	label := "localcluster-offline-" + uuid.NewString()[:8]
	offline, err := wallet.New(label)
	if err != nil {
		t.Fatal(err)
	}
	if err := offline.Connect(ctx, inv); err != nil {
		t.Fatalf("second wallet: connect through nginx: %v", err)
	}
	if err := offline.RequestMediation(ctx); err != nil {
		t.Fatalf("second wallet: mediation through nginx: %v", err)
	}
	didKey, err := diddoc.DIDKeyFromVerkey(offline.Verkey())
	if err != nil {
		t.Fatal(err)
	}
	if res, err := offline.AddKey(ctx, didKey); err != nil || res != "success" {
		t.Fatalf("second wallet: keylist add: %q %v", res, err)
	}
	const waiting = 7
	waitingIDs := sendForwards(ctx, t, sender, c.proxy, offline, waiting)
	if n := queueRows(t, c.dbURL); n != waiting {
		t.Fatalf("queue holds %d rows with %d messages waiting for the offline wallet, want %d", n, waiting, waiting)
	}

	t.Run("queue stats", func(t *testing.T) {
		checkQueueStats(t, c, label, waiting)
	})
	t.Run("metrics", func(t *testing.T) {
		checkMetrics(t, c, live+waiting)
	})

	// The offline wallet comes online and picks up over HTTP through nginx
	// (its requests alternate between the instances): each message once.
	got, err := offline.PickupHTTP(ctx, 3)
	if err != nil {
		t.Fatalf("pickup over HTTP through nginx: %v", err)
	}
	picked := map[string]int{}
	for _, d := range got {
		inner, _, err := offline.Unpack(d.Payload)
		if err != nil {
			t.Fatalf("open picked-up message: %v", err)
		}
		picked[inner.ID]++
	}
	for _, id := range waitingIDs {
		if picked[id] != 1 {
			t.Errorf("waiting message %s picked up %d times, want 1", id, picked[id])
		}
	}
	if len(got) != waiting {
		t.Errorf("picked up %d messages, want %d", len(got), waiting)
	}
	if n := queueRows(t, c.dbURL); n != 0 {
		t.Fatalf("queue holds %d rows at the end, want 0", n)
	}

	// nginx lets a message just over the mediator's 5 MiB limit through, so
	// that the mediator itself answers 413 (client_max_body_size has headroom).
	t.Run("oversize message", func(t *testing.T) {
		offset := c.accessLogSize(t)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.proxy, bytes.NewReader(bytes.Repeat([]byte("x"), 5<<20+512<<10)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", wallet.ContentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("5.5 MiB POST through nginx: HTTP %d, want 413", resp.StatusCode)
		}
		var line string
		waitFor(t, 5*time.Second, "nginx to log the oversize POST", func() bool {
			b, err := os.ReadFile(c.accessLog)
			if err != nil || int64(len(b)) <= offset {
				return false
			}
			line = string(b[offset:])
			return strings.Contains(line, `"POST `)
		})
		if m := upstreamRE.FindStringSubmatch(line); m == nil || m[2] != "413" {
			t.Fatalf("the 413 did not come from a mediator instance (nginx log: %s)", strings.TrimSpace(line))
		}
	})
}

// checkQueueStats runs `mediator queue stats --json` on the cluster's
// database: the offline wallet's connection must show exactly want messages,
// and the totals too (the live wallet's queue is empty).
func checkQueueStats(t *testing.T, c *localCluster, label string, want int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "queue", "stats", "--json", "--limit", "0", "--database-url", c.dbURL)
	cmd.Env = adminEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && strings.Contains(stdout.String()+stderr.String(), "No help topic for 'queue'") {
		t.Skipf("skipping the queue stats check: this build has no `mediator queue stats` yet (%s)", strings.TrimSpace(stdout.String()+stderr.String()))
	}
	if err != nil {
		t.Fatalf("mediator queue stats --json: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	var doc struct {
		Connections []struct {
			ConnectionID string `json:"connection_id"`
			Label        string `json:"label"`
			Depth        int    `json:"depth"`
			InFlight     int    `json:"in_flight"`
		} `json:"connections"`
		Totals struct {
			Connections int `json:"connections"`
			Depth       int `json:"depth"`
			InFlight    int `json:"in_flight"`
		} `json:"totals"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("queue stats --json is not the expected JSON: %v\n%s", err, stdout.String())
	}
	if doc.Totals.Depth != want || doc.Totals.Connections != 1 || doc.Totals.InFlight != 0 {
		t.Errorf("queue stats totals: depth %d, connections %d, in flight %d; want %d, 1, 0\n%s",
			doc.Totals.Depth, doc.Totals.Connections, doc.Totals.InFlight, want, stdout.String())
	}
	found := false
	for _, q := range doc.Connections {
		if q.Label == label {
			found = true
			if q.Depth != want || q.InFlight != 0 {
				t.Errorf("queue stats for %s (%s): depth %d, in flight %d; want %d, 0", label, q.ConnectionID, q.Depth, q.InFlight, want)
			}
		}
	}
	if !found {
		t.Errorf("queue stats has no connection labelled %q:\n%s", label, stdout.String())
	}
}

// checkMetrics reads every instance's /metrics on its admin listener: each
// must export mediator_inbound_messages_total, each instance must have
// handled forwards (round robin), and together exactly forwards of them. A
// counter may be bumped just after the reply went out, so the scrape is
// retried for a few seconds before the numbers are judged.
func checkMetrics(t *testing.T, c *localCluster, forwards int) {
	client := &http.Client{Timeout: 10 * time.Second}
	type scrape struct {
		body     string
		err      error
		forwards int
	}
	var scrapes []scrape
	deadline := time.Now().Add(5 * time.Second)
	for {
		scrapes = make([]scrape, len(c.admins))
		refused, total, settled := 0, 0, true
		for i, a := range c.admins {
			resp, err := client.Get(a + "/metrics")
			if err != nil {
				scrapes[i].err = err
				if errors.Is(err, syscall.ECONNREFUSED) {
					refused++
				}
				settled = false
				continue
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			scrapes[i] = scrape{body: string(b), err: err}
			if err != nil {
				settled = false
				continue
			}
			scrapes[i].forwards = sumSeries(t, scrapes[i].body, "mediator_inbound_messages_total", `type="routing/1/forward"`, `outcome="ok"`)
			total += scrapes[i].forwards
		}
		if refused == len(c.admins) {
			t.Skipf("skipping the /metrics check: no instance serves an admin listener at %v "+
				"(this build has no --admin-listen / MEDIATOR_ADMIN_LISTEN yet)", c.admins)
		}
		if (settled && total == forwards) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	total := 0
	for i, s := range scrapes {
		if s.err != nil {
			t.Errorf("GET %s/metrics: %v", c.admins[i], s.err)
			continue
		}
		if !strings.Contains(s.body, "mediator_inbound_messages_total") {
			t.Errorf("%s/metrics has no mediator_inbound_messages_total", c.admins[i])
			continue
		}
		t.Logf("instance %d (%s): %d forwards in mediator_inbound_messages_total", i+1, c.admins[i], s.forwards)
		if s.forwards == 0 {
			t.Errorf("instance %d counted no forwards: nginx did not spread them, or the metric is not counted", i+1)
		}
		total += s.forwards
	}
	if !t.Failed() && total != forwards {
		t.Errorf("the instances counted %d forwards with outcome ok, want %d (every forward was posted once, through nginx)", total, forwards)
	}
}

// sumSeries adds up the samples of metric whose labels contain every one of
// matchers, in the Prometheus text format.
func sumSeries(t *testing.T, body, metric string, matchers ...string) int {
	t.Helper()
	total := 0.0
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, metric+"{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			continue
		}
		labels := line[len(metric)+1 : end]
		ok := true
		for _, m := range matchers {
			if !strings.Contains(labels, m) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		fields := strings.Fields(line[end+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		total += v
	}
	return int(total)
}
