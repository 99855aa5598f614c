package model

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // empty when valid
	}{
		{"single letter", "a", ""},
		{"single digit", "7", ""},
		{"with dashes", "my-vm-1", ""},
		{"all digits", "123", ""},
		{"inner double dash", "a--b", ""},
		{"63 chars", strings.Repeat("a", 63), ""},
		{"empty", "", "empty"},
		{"64 chars", strings.Repeat("a", 64), "64 characters, at most 63"},
		{"uppercase", "MyVM", "character 'M' not allowed"},
		{"underscore", "my_vm", "character '_' not allowed"},
		{"dot", "my.vm", "character '.' not allowed"},
		{"space", "my vm", "character ' ' not allowed"},
		{"slash", "a/b", "character '/' not allowed"},
		{"leading dash", "-vm", "must not start or end with '-'"},
		{"trailing dash", "vm-", "must not start or end with '-'"},
		{"only dash", "-", "must not start or end with '-'"},
		{"unicode", "vé", "not allowed"},
		{"unicode lookalike", "vm\u2010a", "not allowed"},
		{"nul byte", "vm\x00", "not allowed"},
		{"invalid utf-8", "vm\xff", "not allowed"},
		{"long unicode", strings.Repeat("é", 40), "80 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("ValidateName(%q): got error %v, want nil", tt.in, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateName(%q): got nil, want error containing %q", tt.in, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidateName(%q): got error %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("ValidateName(%q): got multi-line error %q", tt.in, err)
			}
		})
	}
}

func TestValidateNameTruncatesLongInput(t *testing.T) {
	err := ValidateName(strings.Repeat("x", 10000))
	if err == nil {
		t.Fatal("ValidateName(10000 chars): got nil, want error")
	}
	if got := len(err.Error()); got > 200 {
		t.Errorf("ValidateName(10000 chars): got a %d-byte error, want at most 200", got)
	}
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"a", "my-vm", "-a", "a-", "A", "a_b", "", strings.Repeat("a", 63), strings.Repeat("a", 64), "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateName(s)
		if got, want := err == nil, dnsLabel.MatchString(s); got != want {
			t.Fatalf("ValidateName(%q): got valid=%v (err %v), want valid=%v by the DNS label rule", s, got, err, want)
		}
	})
}
