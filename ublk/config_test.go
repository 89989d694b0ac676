package ublk

import (
	"errors"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Size: 1 << 30}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		create bool
		valid  bool
	}{
		{"defaults", func(*Config) {}, true, true},
		{"no size for create", func(c *Config) { c.Size = 0 }, true, false},
		{"no size for recover", func(c *Config) { c.Size = 0 }, false, true},
		{"unaligned size", func(c *Config) { c.Size = 1<<30 + 512 }, true, false},
		{"negative size", func(c *Config) { c.Size = -4096 }, false, false},
		{"depth", func(c *Config) { c.Depth = UBLK_MAX_QUEUE_DEPTH + 1 }, true, false},
		{"max depth", func(c *Config) { c.Depth = UBLK_MAX_QUEUE_DEPTH }, true, true},
		{"queues", func(c *Config) { c.Queues = UBLK_MAX_NR_QUEUES + 1 }, true, false},
		{"small IO", func(c *Config) { c.MaxIOBytes = 512 }, true, false},
		{"huge IO", func(c *Config) { c.MaxIOBytes = 64 << 20 }, true, false},
		{"unaligned IO", func(c *Config) { c.MaxIOBytes = 6000 }, true, false},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			err := c.withDefaults().validate(tc.create)
			if (err == nil) != tc.valid || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
				t.Fatalf("validate(%+v) = %v, want valid=%v", c, err, tc.valid)
			}
		})
	}
	d := Config{}.withDefaults()
	if d.Queues < 1 || d.Queues > DefaultMaxQueues || d.Depth != DefaultDepth || d.MaxIOBytes != DefaultMaxIOBytes ||
		d.Timeout != DefaultTimeout || d.Logger == nil || d.Metrics != nil {
		t.Fatalf("defaults: %+v", d)
	}
}

func TestNegotiate(t *testing.T) {
	const all = 0x1fe // what Debian's 6.12 offers
	for _, tc := range []struct {
		name string
		feat uint64
		cfg  Config
		want uint64
	}{
		{"6.12", all, Config{}, UBLK_F_CMD_IOCTL_ENCODE | UBLK_F_USER_COPY | UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE},
		{"no user copy", all, Config{NoUserCopy: true}, UBLK_F_CMD_IOCTL_ENCODE | UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE},
		{"no recovery", all, Config{NoRecovery: true}, UBLK_F_CMD_IOCTL_ENCODE | UBLK_F_USER_COPY},
		{"recovery without reissue", UBLK_F_CMD_IOCTL_ENCODE | UBLK_F_USER_RECOVERY, Config{},
			UBLK_F_CMD_IOCTL_ENCODE | UBLK_F_USER_RECOVERY},
		{"bare", UBLK_F_CMD_IOCTL_ENCODE, Config{}, UBLK_F_CMD_IOCTL_ENCODE},
	} {
		if got := negotiate(tc.feat, tc.cfg); got != tc.want {
			t.Errorf("%s: negotiate(%#x) = %#x, want %#x", tc.name, tc.feat, got, tc.want)
		}
	}
}

func TestDeviceParams(t *testing.T) {
	p := deviceParams(1<<30, 512<<10)
	b := p.Basic
	if b.LogicalBSShift != 9 || b.PhysicalBSShift != 12 || b.DevSectors != 1<<21 || b.MaxSectors != 1024 {
		t.Fatalf("basic params %+v", b)
	}
	if b.Attrs&UBLK_ATTR_VOLATILE_CACHE == 0 || b.Attrs&UBLK_ATTR_FUA == 0 {
		t.Fatalf("attrs %#x: no volatile cache and FUA: FLUSH and FUA would not reach the backend", b.Attrs)
	}
	if p.Types != UBLK_PARAM_TYPE_BASIC|UBLK_PARAM_TYPE_DISCARD || p.Discard.MaxDiscardSegments != 1 ||
		p.Discard.DiscardGranularity != 4096 || p.Discard.MaxWriteZeroesSectors == 0 {
		t.Fatalf("discard params %+v (types %#x)", p.Discard, p.Types)
	}
}

func TestUnavailable(t *testing.T) {
	if Available() {
		t.Skip("this kernel has ublk")
	}
	if _, err := Create(nopBackend{}, Config{Size: 1 << 20}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Create without ublk = %v, want ErrUnavailable", err)
	}
	if _, err := Features(time.Second); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Features without ublk = %v, want ErrUnavailable", err)
	}
	if _, err := Create(nopBackend{}, Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Create without a size = %v, want ErrInvalidConfig", err)
	}
	if _, err := Create(nil, Config{Size: 1 << 20}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Create without a backend = %v, want ErrInvalidConfig", err)
	}
	if _, err := Recover(0, nil, Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Recover without a backend = %v, want ErrInvalidConfig", err)
	}
}

// nopBackend is a Backend that is never called.
type nopBackend struct{}

func (nopBackend) ReadAt(p []byte, off int64) (int, error)                { return len(p), nil }
func (nopBackend) WriteAsync(_ []byte, _ int64, _ bool, done func(error)) { done(nil) }
func (nopBackend) ZeroAsync(_, _ int64, _ bool, done func(error))         { done(nil) }
func (nopBackend) FlushAsync(done func(error))                            { done(nil) }
