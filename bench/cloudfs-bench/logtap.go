package main

import (
	"context"
	"log/slog"
)

// logTap is a slog.Handler that passes every record of the store's logger
// (Debug included) to fn: the harness reads what the store logs (checkpoint
// body sizes, records rolled forward) without reaching into it.
type logTap struct{ fn func(slog.Record) }

func tapLogger(fn func(slog.Record)) *slog.Logger { return slog.New(logTap{fn}) }

func (logTap) Enabled(context.Context, slog.Level) bool { return true }

func (t logTap) Handle(_ context.Context, r slog.Record) error {
	t.fn(r)
	return nil
}

func (t logTap) WithAttrs([]slog.Attr) slog.Handler { return t }
func (t logTap) WithGroup(string) slog.Handler      { return t }

// attrInt returns the integer attribute key of r, or 0 if it has none.
func attrInt(r slog.Record, key string) int64 {
	var v int64
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != key {
			return true
		}
		switch a.Value.Kind() {
		case slog.KindInt64:
			v = a.Value.Int64()
		case slog.KindUint64:
			v = int64(a.Value.Uint64())
		}
		return false
	})
	return v
}
