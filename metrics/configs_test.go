package metrics_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"gopkg.in/yaml.v3"

	"github.com/openmediator/mediator/metrics"
)

// exposedNames are the series names a full Metrics exposes (histograms as
// their _bucket, _sum and _count series).
func exposedNames(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New(metrics.Options{})
	m.Inbound("http", "routing/1/forward", "ok")
	m.WatchLiveSessions(func() map[string]int { return nil })
	m.WatchListener(func() bool { return true })
	m.WatchReady(func(context.Context) error { return nil })
	m.WatchForwardBatches(func() (int64, int64) { return 0, 0 })
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	m.WatchPool(pool.Stat)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		n := f.GetName()
		if f.GetType().String() == "HISTOGRAM" {
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
			continue
		}
		names[n] = true
	}
	return names
}

var metricName = regexp.MustCompile(`\b(mediator|go|process)_[a-z_]+\b`)

// checkNames fails for every metric name in expr that is not exposed.
func checkNames(t *testing.T, where, expr string, exposed map[string]bool) {
	t.Helper()
	for _, n := range metricName.FindAllString(expr, -1) {
		if !exposed[n] {
			t.Errorf("%s: %s is not a metric the mediator exposes (in %s)", where, n, expr)
		}
	}
}

func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile("../configs/prometheus-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert       string
				Expr        string
				For         string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatal(err)
	}
	exposed := exposedNames(t)
	alerts := map[string]bool{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("group %s: a rule without alert or expr", g.Name)
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary or description missing", r.Alert)
			}
			checkNames(t, r.Alert, r.Expr, exposed)
		}
	}
	// What the operators asked to be alerted about.
	for _, a := range []string{"MediatorQueueDepthHigh", "MediatorOldestMessageOld", "MediatorNoInstanceReady",
		"MediatorWebhookFailures", "MediatorLimitRejectionsSpike", "MediatorListenDisconnected", "MediatorRedeliveriesSpike"} {
		if !alerts[a] {
			t.Errorf("no alert %s", a)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../configs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID           string
		Title         string
		SchemaVersion int
		Panels        []struct {
			ID      int
			Type    string
			Title   string
			Targets []struct {
				Expr  string
				RefID string
			}
			GridPos struct{ H, W, X, Y int }
		}
		Templating struct {
			List []struct{ Name, Type string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || dash.Title == "" || dash.SchemaVersion == 0 || len(dash.Panels) == 0 {
		t.Fatalf("not a dashboard: uid %q title %q schema %d, %d panels", dash.UID, dash.Title, dash.SchemaVersion, len(dash.Panels))
	}
	vars := map[string]bool{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
	}
	exposed := exposedNames(t)
	used := map[string]bool{}
	ids := map[int]bool{}
	variable := regexp.MustCompile(`\$\{?(\w+)`)
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: grid position %+v", p.Title, p.GridPos)
		}
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			checkNames(t, p.Title, q.Expr, exposed)
			for _, n := range metricName.FindAllString(q.Expr, -1) {
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")] = true
			}
			for _, v := range variable.FindAllStringSubmatch(q.Expr, -1) {
				if !vars[v[1]] && !strings.HasPrefix(v[1], "__") {
					t.Errorf("panel %q uses undefined variable $%s", p.Title, v[1])
				}
			}
		}
	}
	// Every mediator metric is on the dashboard somewhere, bar these.
	skip := map[string]bool{"mediator_build_info": true, "mediator_queue_sample_errors_total": true,
		"mediator_db_pool_constructing_connections": true, "mediator_db_pool_total_connections": true,
		"mediator_db_pool_empty_acquire_wait_seconds_total": true, "mediator_db_pool_max_lifetime_destroys_total": true,
		"mediator_db_pool_max_idle_destroys_total": true}
	for n := range exposed {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
		if strings.HasPrefix(base, "mediator_") && !used[base] && !skip[base] {
			t.Errorf("%s is on no dashboard panel", base)
		}
	}
}
