package workspace

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzSafeName(f *testing.F) {
	for _, s := range []string{"repo", "my repo", "..", "-x", "проект", "a\x00b", strings.Repeat("é", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := SafeName(in)
		if got == "" || len(got) > 64 || strings.HasPrefix(got, ".") || strings.HasPrefix(got, "-") || strings.HasSuffix(got, "-") {
			t.Fatalf("SafeName(%q) = %q: empty, too long, or starts with '.'/'-' or ends with '-'", in, got)
		}
		for _, c := range []byte(got) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				t.Fatalf("SafeName(%q) = %q: holds byte %q", in, got, c)
			}
		}
		if got == "." || got == ".." {
			t.Fatalf("SafeName(%q) = %q", in, got)
		}
	})
}

func FuzzListName(f *testing.F) {
	for _, s := range []string{"a", "new\nline", "\"q", "a -> b", " x", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := listName(in)
		if strings.ContainsAny(got, "\n\r") || !utf8.ValidString(got) {
			t.Fatalf("listName(%q) = %q: holds a line break or invalid UTF-8", in, got)
		}
		if strings.Contains(got, " -> ") && !strings.HasPrefix(got, `"`) {
			t.Fatalf("listName(%q) = %q: an unquoted arrow", in, got)
		}
	})
}
