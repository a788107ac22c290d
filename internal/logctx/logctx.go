// Package logctx carries log attributes in a context: request-scoped ids
// (session, connection, message type) set once on the inbound path appear
// on every line logged with that context through a wrapped logger, without
// threading a logger through every call.
//
// Only ids and bounded metadata belong here: never payloads, keys or
// tokens.
package logctx

import (
	"context"
	"log/slog"
	"slices"
)

type ctxKey struct{}

// With returns a context carrying attrs besides those ctx carries; an attr
// whose key ctx already carries replaces it.
func With(ctx context.Context, attrs ...slog.Attr) context.Context {
	if len(attrs) == 0 {
		return ctx
	}
	old := Attrs(ctx)
	merged := make([]slog.Attr, 0, len(old)+len(attrs))
	for _, a := range old {
		if !slices.ContainsFunc(attrs, func(b slog.Attr) bool { return b.Key == a.Key }) {
			merged = append(merged, a)
		}
	}
	merged = append(merged, attrs...)
	return context.WithValue(ctx, ctxKey{}, merged)
}

// Replace returns a context carrying exactly attrs, none of those ctx
// carries.
func Replace(ctx context.Context, attrs ...slog.Attr) context.Context {
	return context.WithValue(ctx, ctxKey{}, slices.Clone(attrs))
}

// Attrs returns the attributes ctx carries. The slice must not be modified.
func Attrs(ctx context.Context) []slog.Attr {
	if ctx == nil {
		return nil
	}
	a, _ := ctx.Value(ctxKey{}).([]slog.Attr)
	return a
}

// Wrap returns a logger that adds the attributes of a record's context
// (see With) to the record, unless the record or the logger already has an
// attribute with that key. Wrapping a wrapped logger returns it unchanged.
func Wrap(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(*handler); ok {
		return l
	}
	return slog.New(&handler{next: l.Handler()})
}

type handler struct {
	next slog.Handler
	// keys are the top-level keys added by WithAttrs.
	keys []string
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	attrs := Attrs(ctx)
	if len(attrs) == 0 {
		return h.next.Handle(ctx, r)
	}
	var present []string
	r.Attrs(func(a slog.Attr) bool {
		present = append(present, a.Key)
		return true
	})
	var add []slog.Attr
	for _, a := range attrs {
		if !slices.Contains(present, a.Key) && !slices.Contains(h.keys, a.Key) {
			add = append(add, a)
		}
	}
	if len(add) > 0 {
		r = r.Clone()
		r.AddAttrs(add...)
	}
	return h.next.Handle(ctx, r)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	keys := slices.Clone(h.keys)
	for _, a := range attrs {
		keys = append(keys, a.Key)
	}
	return &handler{next: h.next.WithAttrs(attrs), keys: keys}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	// Context attributes of records in the group land in the group; the
	// keys seen so far were outside it and no longer shadow them.
	return &handler{next: h.next.WithGroup(name)}
}
