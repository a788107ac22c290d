package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// runWithConfig runs a throwaway command that has the serve flags, loads the
// given YAML and returns the resulting settings.
func runWithConfig(t *testing.T, yaml string, args []string, env map[string]string) (*cli.Context, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "mediator.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var got *cli.Context
	cmd := serveCommand()
	cmd.Action = func(c *cli.Context) error { got = c; return nil }
	app := &cli.App{Name: "mediator", Commands: []*cli.Command{cmd}, Writer: &bytes.Buffer{}, ErrWriter: &bytes.Buffer{}}
	err := app.Run(append([]string{"mediator", "serve", "--config", path}, args...))
	return got, err
}

func TestConfigFilePrecedence(t *testing.T) {
	yaml := "listen: 0.0.0.0:9999\nlabel: From File\nendpoint:\n  - https://m.example.org\n  - wss://m.example.org\nws-ping-interval: 7s\nauto-grant: false\n"
	c, err := runWithConfig(t, yaml, []string{"--label", "From Flag"}, map[string]string{"MEDIATOR_WS_PING_INTERVAL": "3s"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.String("listen"); got != "0.0.0.0:9999" {
		t.Errorf("listen = %q, want the file's 0.0.0.0:9999", got)
	}
	if got := c.String("label"); got != "From Flag" {
		t.Errorf("label = %q, want the flag's value", got)
	}
	if got := c.Duration("ws-ping-interval").String(); got != "3s" {
		t.Errorf("ws-ping-interval = %s, want the environment's 3s", got)
	}
	if got := c.Bool("auto-grant"); got {
		t.Errorf("auto-grant = true, want the file's false")
	}
	if got := strings.Join(c.StringSlice("endpoint"), ","); got != "https://m.example.org,wss://m.example.org" {
		t.Errorf("endpoint = %q", got)
	}
}

func TestConfigFileErrors(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key", "listn: 1.2.3.4:80\n", `unknown setting "listn"`},
		{"bad duration", "ws-ping-interval: often\n", "ws-ping-interval"},
		{"not yaml", "listen: [unclosed\n", "not valid YAML"},
		{"mapping value", "listen:\n  host: x\n", "not a mapping"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runWithConfig(t, tc.yaml, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	b, err := os.ReadFile("../../configs/mediator.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := runWithConfig(t, string(b), nil, nil)
	if err != nil {
		t.Fatalf("the shipped example does not load: %v", err)
	}
	if err := validateServe(c); err != nil {
		t.Fatalf("the shipped example does not validate: %v", err)
	}
	if _, err := endpoints(c); err != nil {
		t.Fatalf("the shipped example's endpoints: %v", err)
	}
}

func TestValidateServe(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // "" = valid
	}{
		{"defaults", nil, ""},
		{"ttl too short", []string{"--heartbeat-interval", "5s", "--instance-ttl", "10s"}, "at least 3 × --heartbeat-interval"},
		{"grace not below lease", []string{"--ack-grace", "60s", "--delivery-lease", "60s"}, "shorter than --delivery-lease"},
		{"zero lease", []string{"--delivery-lease", "0s"}, "--delivery-lease must be positive"},
		{"tiny messages", []string{"--max-message-bytes", "10"}, "at least 1024"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := runWithConfig(t, "", tc.args, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = validateServe(c)
			if tc.want == "" && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(keyFile, []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	os.WriteFile(pwFile, []byte("s3cr&t/pw\n"), 0o600)
	c, err := runWithConfig(t, "", []string{"--master-key-file", keyFile, "--database-password-file", pwFile,
		"--database-url", "postgres://mediator@db:5432/mediator"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := masterKeyText(c)
	if err != nil || key != strings.Repeat("ab", 32) {
		t.Fatalf("master key %q, %v", key, err)
	}
	u, err := databaseURL(c)
	if err != nil || u != "postgres://mediator:s3cr&t%2Fpw@db:5432/mediator" {
		t.Fatalf("database url %q, %v", u, err)
	}
	c, _ = runWithConfig(t, "", []string{"--master-key-file", keyFile, "--master-key", "x"}, nil)
	if _, err := masterKeyText(c); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("both key sources: %v", err)
	}
}

func TestOneConfigFileServesEveryCommand(t *testing.T) {
	app := newApp()
	var got *cli.Context
	for _, cmd := range app.Commands {
		if cmd.Name == "migrate" {
			cmd.Action = func(c *cli.Context) error { got = c; return nil }
		}
	}
	app.Writer, app.ErrWriter = &bytes.Buffer{}, &bytes.Buffer{}
	if err := app.Run([]string{"mediator", "migrate", "--config", "../../configs/mediator.example.yaml"}); err != nil {
		t.Fatalf("migrate with the serve example config: %v", err)
	}
	if got.String("database-url") != "postgres://mediator@db.internal:5432/mediator" {
		t.Fatalf("database-url = %q, want the file's", got.String("database-url"))
	}
}

func TestVacuumDeadRowsFlag(t *testing.T) {
	for _, tc := range []struct{ flag, want int }{
		{0, -1}, // off
		{-5, -1},
		{1, 1},
		{10_000, 10_000},
	} {
		if got := vacuumDeadRows(tc.flag); got != tc.want {
			t.Errorf("vacuumDeadRows(%d) = %d, want %d", tc.flag, got, tc.want)
		}
	}
}
