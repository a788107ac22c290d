package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// buildInfo describes the running binary.
type buildInfo struct {
	Version      string `json:"version"`
	GoVersion    string `json:"go_version"`
	Revision     string `json:"revision"`      // VCS commit, "" if unknown
	RevisionTime string `json:"revision_time"` // its commit time (RFC 3339), "" if unknown
	Modified     bool   `json:"modified"`      // built from a work tree with uncommitted changes
}

// readBuildInfo combines the -ldflags version with what the Go toolchain
// recorded in the binary. A binary built by `go install …@vX` reports vX
// when no version was set at link time.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.RevisionTime = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the Go version and the VCS revision it was built from",
		Description: `Example:
   mediator version
   mediator version --json`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print one JSON document"}},
		Action: func(c *cli.Context) error {
			b := readBuildInfo()
			if c.Bool("json") {
				return writeJSON(c.App.Writer, b)
			}
			rev := orDash(b.Revision)
			if b.Modified {
				rev += " (modified)"
			}
			tw := newTable(c.App.Writer)
			tabRow(tw, "version:", b.Version)
			tabRow(tw, "go:", b.GoVersion)
			tabRow(tw, "revision:", rev)
			tabRow(tw, "revision time:", orDash(b.RevisionTime))
			tabRow(tw, "platform:", fmt.Sprintf("%s/%s", runtime.GOOS, runtime.GOARCH))
			return tw.Flush()
		},
	}
}
