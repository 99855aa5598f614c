package model

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseSize parses a disk size: a positive integer with an optional
// K, M or G suffix (binary units; "KiB", "MiB", "GiB", "KB", "MB" and
// "GB" forms are accepted, case-insensitive). A bare number counts MiB;
// a number with a lone "B" suffix counts bytes, the form FormatSizeBytes
// uses for sizes that are not whole KiB. The result is between 1 byte
// and MaxDiskBytes.
func ParseSize(raw string) (int64, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return 0, errors.New("size is required")
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return 0, fmt.Errorf("invalid size %q: want a number with an optional K, M or G suffix", raw)
		}
	}
	// ASCII only from here, so upper-casing keeps byte positions and
	// cannot turn a non-ASCII letter into a unit.
	s = strings.ToUpper(s)
	multiplier := int64(1024 * 1024)
	number := s
	if trimmed, ok := strings.CutSuffix(number, "IB"); ok {
		number = trimmed
		if number == "" || !strings.ContainsAny(number[len(number)-1:], "KMG") {
			return 0, fmt.Errorf("invalid size %q: want a number with an optional K, M or G suffix", raw)
		}
	} else if trimmed, ok := strings.CutSuffix(number, "B"); ok && trimmed != "" {
		number = trimmed
		if c := trimmed[len(trimmed)-1]; c >= '0' && c <= '9' {
			multiplier = 1
		}
	}
	if number != "" && multiplier != 1 {
		switch number[len(number)-1] {
		case 'K':
			multiplier = 1024
			number = number[:len(number)-1]
		case 'M':
			number = number[:len(number)-1]
		case 'G':
			multiplier = 1024 * 1024 * 1024
			number = number[:len(number)-1]
		}
	}
	if number == "" {
		return 0, fmt.Errorf("invalid size %q: missing number", raw)
	}
	if number[0] == '-' {
		return 0, fmt.Errorf("invalid size %q: must be positive", raw)
	}
	for _, c := range number {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("invalid size %q: want a number with an optional K, M or G suffix", raw)
		}
	}
	value, err := strconv.ParseInt(number, 10, 64)
	if err != nil || value > math.MaxInt64/multiplier {
		return 0, fmt.Errorf("invalid size %q: exceeds the maximum of %s", raw, FormatSizeBytes(MaxDiskBytes))
	}
	result := value * multiplier
	if result <= 0 {
		return 0, fmt.Errorf("invalid size %q: must be positive", raw)
	}
	if result > MaxDiskBytes {
		return 0, fmt.Errorf("invalid size %q: exceeds the maximum of %s", raw, FormatSizeBytes(MaxDiskBytes))
	}
	return result, nil
}

// FormatSizeBytes formats bytes in the largest binary unit that divides
// it exactly: "8G", "512M", "4K", or bytes with a "B" suffix ("1000B").
// ParseSize reads every positive result back to the same value.
func FormatSizeBytes(bytes int64) string {
	const (
		kib = 1024
		mib = 1024 * kib
		gib = 1024 * mib
	)
	switch {
	case bytes == 0:
		return "0"
	case bytes%gib == 0:
		return fmt.Sprintf("%dG", bytes/gib)
	case bytes%mib == 0:
		return fmt.Sprintf("%dM", bytes/mib)
	case bytes%kib == 0:
		return fmt.Sprintf("%dK", bytes/kib)
	default:
		return strconv.FormatInt(bytes, 10) + "B"
	}
}

// HumanBytes formats bytes for people: "1.5 GiB", "12 MiB", "900 B".
func HumanBytes(bytes int64) string {
	const unit = 1024
	if bytes < unit {
		return fmt.Sprintf("%d B", bytes)
	}
	div, exp := int64(unit), 0
	for n := bytes / unit; n >= unit && exp < 5; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(bytes)/float64(div), "KMGTPE"[exp])
}
