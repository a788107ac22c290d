package main

import (
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

// flagConfig names an optional YAML file of settings. Its keys are flag
// names; a flag given on the command line or through its environment
// variable wins over the file, and the file wins over the defaults.
var flagConfig = &cli.StringFlag{
	Name: "config", EnvVars: []string{"MEDIATOR_CONFIG"},
	Usage: "`FILE` with settings in YAML, keys named like the flags (see configs/mediator.example.yaml)",
}

// secretFileFlags read a secret from a file, so it need not sit in the
// environment or on the command line (where `ps` shows it).
var (
	flagMasterKeyFile = &cli.StringFlag{
		Name: "master-key-file", EnvVars: []string{"MEDIATOR_MASTER_KEY_FILE"},
		Usage: "`FILE` holding the master key (instead of --master-key)",
	}
	flagDatabasePasswordFile = &cli.StringFlag{
		Name: "database-password-file", EnvVars: []string{"MEDIATOR_DATABASE_PASSWORD_FILE"},
		Usage: "`FILE` holding the database password, used when --database-url has none",
	}
)

// loadConfigFile applies the --config file to every flag of the command
// that was not set by flag or environment. Unknown keys are errors, so a
// typo does not silently leave a default in force.
func loadConfigFile(c *cli.Context) error {
	path := c.String(flagConfig.Name)
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(b, &settings); err != nil {
		return fmt.Errorf("--config %s: not valid YAML: %w", path, err)
	}
	// One file serves every command: keys of other commands' flags are
	// skipped here, keys of no command are typos.
	mine := map[string]bool{}
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			mine[n] = true
		}
	}
	known := map[string]bool{}
	for _, cmd := range c.App.Commands {
		for _, f := range allFlags(cmd) {
			for _, n := range f.Names() {
				known[n] = true
			}
		}
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !known[k] || k == flagConfig.Name || k == "help" {
			return fmt.Errorf("--config %s: unknown setting %q (settings are named like the flags of `mediator serve --help`)", path, k)
		}
		if !mine[k] || c.IsSet(k) {
			continue
		}
		values, err := settingValues(settings[k])
		if err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, k, err)
		}
		for _, v := range values {
			if err := c.Set(k, v); err != nil {
				return fmt.Errorf("--config %s: %s: cannot use %q: %w (durations look like 30s or 5m, booleans are true or false, sizes are plain numbers of bytes)", path, k, truncate(v, 64), err)
			}
		}
	}
	return nil
}

func settingValues(v any) ([]string, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case []any:
		out := make([]string, 0, len(t))
		for _, item := range t {
			if _, nested := item.([]any); nested {
				return nil, fmt.Errorf("nested lists are not settings")
			}
			out = append(out, fmt.Sprint(item))
		}
		return out, nil
	case map[string]any:
		return nil, fmt.Errorf("a setting is a value or a list, not a mapping")
	default:
		return []string{fmt.Sprint(t)}, nil
	}
}

// readSecretFile returns a file's content without surrounding white space.
func readSecretFile(flag, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("--%s: %s is empty", flag, path)
	}
	return s, nil
}

// masterKeyText is the master key from --master-key or --master-key-file.
func masterKeyText(c *cli.Context) (string, error) {
	key, path := c.String(flagMasterKey.Name), c.String(flagMasterKeyFile.Name)
	switch {
	case key != "" && path != "":
		return "", fmt.Errorf("give --master-key or --master-key-file, not both")
	case path != "":
		return readSecretFile(flagMasterKeyFile.Name, path)
	default:
		return key, nil
	}
}

// databaseURL is --database-url with the password from
// --database-password-file filled in when the URL has none.
func databaseURL(c *cli.Context) (string, error) {
	raw := c.String(flagDatabaseURL.Name)
	path := c.String(flagDatabasePasswordFile.Name)
	if raw == "" || path == "" {
		return raw, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "", fmt.Errorf("--database-url: give a URL like postgres://user@host:5432/dbname")
	}
	if _, has := u.User.Password(); has {
		return "", fmt.Errorf("--database-url already has a password; drop it or --database-password-file")
	}
	pw, err := readSecretFile(flagDatabasePasswordFile.Name, path)
	if err != nil {
		return "", err
	}
	user := "postgres"
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, pw)
	return u.String(), nil
}

// allFlags lists a command's flags and its subcommands'.
func allFlags(cmd *cli.Command) []cli.Flag {
	out := append([]cli.Flag(nil), cmd.Flags...)
	for _, sub := range cmd.Subcommands {
		out = append(out, allFlags(sub)...)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
