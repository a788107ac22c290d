package logctx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/openmediator/mediator/internal/logctx"
)

func record(t *testing.T, buf *bytes.Buffer) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%s: %v", buf, err)
	}
	buf.Reset()
	return m
}

func TestContextAttributes(t *testing.T) {
	var buf bytes.Buffer
	log := logctx.Wrap(slog.New(slog.NewJSONHandler(&buf, nil)))
	if logctx.Wrap(log) != log {
		t.Error("wrapping twice made a new logger")
	}
	ctx := logctx.With(context.Background(), slog.String("session", "s1"), slog.String("msg_type", "a/1/b"))
	ctx = logctx.With(ctx, slog.String("connection", "c1"), slog.String("msg_type", "x/1/y"))

	log.InfoContext(ctx, "hello", "n", 1)
	m := record(t, &buf)
	for k, want := range map[string]any{"session": "s1", "connection": "c1", "msg_type": "x/1/y", "n": float64(1)} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v (%v)", k, m[k], want, m)
		}
	}

	// The record's own attribute wins, and is not repeated.
	log.InfoContext(ctx, "explicit", "connection", "c2")
	if raw := buf.String(); bytes.Count([]byte(raw), []byte(`"connection"`)) != 1 {
		t.Errorf("connection repeated: %s", raw)
	}
	if m := record(t, &buf); m["connection"] != "c2" {
		t.Errorf("connection = %v, want the record's c2", m["connection"])
	}

	// So does the logger's.
	log.With("session", "s9").InfoContext(ctx, "with")
	if m := record(t, &buf); m["session"] != "s9" {
		t.Errorf("session = %v, want the logger's s9", m["session"])
	}

	// Replace drops what the context carried.
	log.InfoContext(logctx.Replace(ctx, slog.String("session", "s7")), "replaced")
	if m := record(t, &buf); m["session"] != "s7" || m["connection"] != nil || m["msg_type"] != nil {
		t.Errorf("after Replace: %v", m)
	}

	// No context, no attributes.
	log.Info("plain")
	if m := record(t, &buf); m["session"] != nil {
		t.Errorf("session = %v without a context", m["session"])
	}
}

// The handler does not modify the caller's record: two handlers share it.
func TestRecordNotShared(t *testing.T) {
	var a, b bytes.Buffer
	ha := slog.NewJSONHandler(&a, nil)
	hb := slog.NewJSONHandler(&b, nil)
	log := logctx.Wrap(slog.New(fanout{ha, hb}))
	ctx := logctx.With(context.Background(), slog.String("session", "s1"))
	log.InfoContext(ctx, "x")
	if record(t, &a)["session"] != "s1" || record(t, &b)["session"] != "s1" {
		t.Error("attribute missing on one handler")
	}
}

type fanout []slog.Handler

func (f fanout) Enabled(context.Context, slog.Level) bool { return true }
func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range f {
		if err := h.Handle(ctx, r.Clone()); err != nil {
			return err
		}
	}
	return nil
}
func (f fanout) WithAttrs([]slog.Attr) slog.Handler { return f }
func (f fanout) WithGroup(string) slog.Handler      { return f }
