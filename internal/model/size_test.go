package model

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

const (
	kib int64 = 1024
	mib       = 1024 * kib
	gib       = 1024 * mib
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"4G", 4 * gib},
		{"4g", 4 * gib},
		{"4GiB", 4 * gib},
		{"4gib", 4 * gib},
		{"4GB", 4 * gib}, // B forms are binary units too
		{"2GB", 2 * gib},
		{"512MiB", 512 * mib},
		{"512mib", 512 * mib},
		{"512M", 512 * mib},
		{"512MB", 512 * mib},
		{"1024", 1024 * mib}, // a bare number counts MiB
		{"1", mib},
		{"1K", kib},
		{"1k", kib},
		{"1KiB", kib},
		{"1KB", kib},
		{"1B", 1}, // a lone B counts bytes
		{"1000B", 1000},
		{"1000b", 1000},
		{" 8G ", 8 * gib},
		{"\t8G\n", 8 * gib},
		{"0008G", 8 * gib},
		{"128G", MaxDiskBytes},
		{"131072M", MaxDiskBytes},
		{"137438953472B", MaxDiskBytes},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err != nil {
				t.Fatalf("ParseSize(%q): got error %v, want %d", tt.in, err, tt.want)
			}
			if got != tt.want {
				t.Errorf("ParseSize(%q): got %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseSizeRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring of the error
	}{
		{"empty", "", "size is required"},
		{"blank", "   ", "size is required"},
		{"unit only", "G", "missing number"},
		{"iec unit only", "GiB", "missing number"},
		{"ib only", "iB", "want a number"},
		{"b only", "B", "want a number"},
		{"minus one", "-1", "must be positive"},
		{"minus one G", "-1G", "must be positive"},
		{"minus one B", "-1B", "must be positive"},
		{"zero", "0", "must be positive"},
		{"zero G", "0G", "must be positive"},
		{"zero B", "0B", "must be positive"},
		{"fraction", "1.5G", "want a number"},
		{"letters", "abc", "want a number"},
		{"plus sign", "+1G", "want a number"},
		{"inner minus", "1-2G", "want a number"},
		{"inner space", "1 G", "want a number"},
		{"unknown unit", "1T", "want a number"},
		{"double unit", "1GG", "want a number"},
		{"ib without unit", "1iB", "want a number"},
		{"overflow G", "9223372036854775807G", "exceeds the maximum of 128G"},
		{"overflow K", "9223372036854775807K", "exceeds the maximum of 128G"},
		{"overflow bare", "99999999999999999999", "exceeds the maximum of 128G"},
		{"max int64 bytes", "9223372036854775807B", "exceeds the maximum of 128G"},
		{"over ceiling", "129G", "exceeds the maximum of 128G"},
		{"one byte over ceiling", "137438953473B", "exceeds the maximum of 128G"},
		{"dotless i", "1mıb", "want a number"}, // ToUpper("ı") == "I"
		{"kelvin sign", "1\u212a", "want a number"},
		{"fullwidth digit", "\uff11G", "want a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err == nil {
				t.Fatalf("ParseSize(%q): got %d, want error containing %q", tt.in, got, tt.wantErr)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("ParseSize(%q): got error %q, want it to contain %q", tt.in, msg, tt.wantErr)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("ParseSize(%q): got multi-line error %q, want one line", tt.in, msg)
			}
			if tt.in != "" && strings.TrimSpace(tt.in) != "" && !strings.Contains(msg, fmt.Sprintf("%q", tt.in)) {
				t.Errorf("ParseSize(%q): got error %q, want it to quote the input", tt.in, msg)
			}
		})
	}
}

func TestFormatSizeBytes(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0"},
		{1, "1B"},
		{1000, "1000B"},
		{1023, "1023B"},
		{kib, "1K"},
		{1536, "1536B"},
		{3 * kib, "3K"},
		{mib, "1M"},
		{mib + kib, "1025K"},
		{512 * mib, "512M"},
		{gib, "1G"},
		{gib + mib, "1025M"},
		{8 * gib, "8G"},
		{MaxDiskBytes, "128G"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := FormatSizeBytes(tt.in); got != tt.want {
				t.Errorf("FormatSizeBytes(%d): got %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestFormatParseRoundTrip checks ParseSize(FormatSizeBytes(n)) == n over
// the edges and a spread of values in 1..MaxDiskBytes.
func TestFormatParseRoundTrip(t *testing.T) {
	values := []int64{1, 2, 1000, 1023, kib, kib + 1, mib - 1, mib, mib + 1, gib - 1, gib, gib + 1, MaxDiskBytes - 1, MaxDiskBytes}
	for n := int64(7); n < MaxDiskBytes; n = n*3 + 1 {
		values = append(values, n, n&^(kib-1), n&^(mib-1), n&^(gib-1))
	}
	for _, n := range values {
		if n < 1 || n > MaxDiskBytes {
			continue
		}
		s := FormatSizeBytes(n)
		got, err := ParseSize(s)
		if err != nil {
			t.Errorf("ParseSize(FormatSizeBytes(%d) = %q): got error %v, want %d", n, s, err, n)
			continue
		}
		if got != n {
			t.Errorf("ParseSize(FormatSizeBytes(%d) = %q): got %d, want %d", n, s, got, n)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{900, "900 B"},
		{1023, "1023 B"},
		{kib, "1.0 KiB"},
		{12 * mib, "12.0 MiB"},
		{gib + gib/2, "1.5 GiB"},
		{math.MaxInt64, "8.0 EiB"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := HumanBytes(tt.in); got != tt.want {
				t.Errorf("HumanBytes(%d): got %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4G", "512MiB", "1024", "1K", "2GB", " 8G ", "1000B", "", "G", "-1", "0", "1.5G",
		"9223372036854775807G", "129G", "99999999999999999999", "1mıb", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if n != 0 {
				t.Errorf("ParseSize(%q): got %d with error %v, want 0", s, n, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("ParseSize(%q): got multi-line error %q", s, err)
			}
			return
		}
		if n < 1 || n > MaxDiskBytes {
			t.Fatalf("ParseSize(%q): got %d, want 1..%d", s, n, MaxDiskBytes)
		}
		back, err := ParseSize(FormatSizeBytes(n))
		if err != nil || back != n {
			t.Fatalf("ParseSize(FormatSizeBytes(%d) = %q): got %d, %v, want %d", n, FormatSizeBytes(n), back, err, n)
		}
	})
}
