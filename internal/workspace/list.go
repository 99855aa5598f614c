package workspace

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// WriteList writes the dry-run view of plan to w: one `SIZE  PATH` line
// per file and symlink (a symlink's size is 0 and its line ends in
// ` -> TARGET`), in archive order, then a total line. Directories are
// implied by the paths and not listed. A path or target that could read
// ambiguously (a line break or other control character, invalid UTF-8,
// leading or trailing space, a leading double quote, or " -> ") is
// printed Go-quoted.
func WriteList(w io.Writer, plan *Plan) error {
	width := len(strconv.FormatInt(plan.TotalBytes, 10))
	var files, links int
	for _, e := range plan.Entries {
		var line string
		switch e.Kind {
		case KindFile:
			files++
			line = fmt.Sprintf("%*d  %s\n", width, e.Size, listName(e.Path))
		case KindSymlink:
			links++
			line = fmt.Sprintf("%*d  %s -> %s\n", width, 0, listName(e.Path), listName(e.Target))
		default:
			continue
		}
		if _, err := io.WriteString(w, line); err != nil {
			return fmt.Errorf("write workspace list: %w", err)
		}
	}
	_, err := fmt.Fprintf(w, "%*d  total: %d %s, %d %s\n", width, plan.TotalBytes,
		files, plural(files, "file", "files"), links, plural(links, "symlink", "symlinks"))
	if err != nil {
		return fmt.Errorf("write workspace list: %w", err)
	}
	return nil
}

// listName prints s as is when it reads unambiguously, else Go-quoted.
func listName(s string) string {
	if s == "" || !utf8.ValidString(s) || strings.HasPrefix(s, `"`) || strings.Contains(s, " -> ") ||
		strings.TrimSpace(s) != s || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
