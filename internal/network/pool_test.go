package network

import (
	"errors"
	"strings"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/model"
)

func TestIsPoolTap(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"bgrp0123456789a", true},
		{"bgrpfffffffffff", true},
		{"bgrp0123456789", false},   // too short
		{"bgrp0123456789ab", false}, // too long
		{"bgrp0123456789A", false},  // uppercase
		{"bgrp012345678xz", false},  // not hex
		{"bgr0123456789ab", false},  // a per-VM TAP
		{"bgrp", false},
		{"", false},
		{"xbrp0123456789a", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsPoolTap(tt.name); got != tt.want {
				t.Errorf("IsPoolTap(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestNewPoolTapName(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		name, err := newPoolTapName()
		if err != nil {
			t.Fatalf("newPoolTapName: %v", err)
		}
		if len(name) != maxIfNameLen {
			t.Errorf("got %q of %d bytes, want %d", name, len(name), maxIfNameLen)
		}
		if err := ValidIfName(name); err != nil {
			t.Errorf("got %q, not a valid interface name: %v", name, err)
		}
		if !IsPoolTap(name) {
			t.Errorf("IsPoolTap(%q) = false, want true", name)
		}
		if !strings.HasPrefix(name, TapPrefix) {
			t.Errorf("got %q, want the prefix %q so orphan sweeps find it", name, TapPrefix)
		}
		if seen[name] {
			t.Errorf("newPoolTapName repeated %q", name)
		}
		seen[name] = true
	}
}

// Per-VM TAP names come from hex VM ids and are never pool names.
func TestVMTapNamesAreNotPoolNames(t *testing.T) {
	for range 200 {
		id, err := model.NewID()
		if err != nil {
			t.Fatal(err)
		}
		if name := TapName(id); IsPoolTap(name) {
			t.Errorf("IsPoolTap(TapName(%q)) = true, want false", id)
		}
	}
}

func TestNewPoolSize(t *testing.T) {
	tests := []struct{ size, want int }{{-3, 0}, {0, 0}, {4, 4}}
	for _, tt := range tests {
		if got := NewPool(nil, tt.size, nil).size; got != tt.want {
			t.Errorf("NewPool size %d: got %d, want %d", tt.size, got, tt.want)
		}
	}
}

func TestClosedPool(t *testing.T) {
	p := NewPool(nil, 2, nil)
	if err := p.Close(t.Context()); err != nil {
		t.Fatalf("Close of an empty pool: %v", err)
	}
	_, err := p.Acquire(t.Context())
	if !errors.Is(err, ErrPoolClosed) || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Acquire after Close: got %v, want ErrPoolClosed (unavailable)", err)
	}
	if err := p.Fill(t.Context()); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("Fill after Close: got %v, want ErrPoolClosed", err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
