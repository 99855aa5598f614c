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
// per archived file and symlink (a symlink's size is 0 and its line ends
// in ` -> TARGET`), in archive order, and a total line of the bytes sent;
// then, for a shallow overlay, the files the guest checks out of the
// sent .git instead, under their own heading and total. Directories are
// implied by the paths and not listed. A path or target that could read
// ambiguously (a line break or other control character, invalid UTF-8,
// leading or trailing space, a leading double quote, or " -> ") is
// printed Go-quoted.
func WriteList(w io.Writer, plan *Plan) error {
	width := len(strconv.FormatInt(max(plan.TotalBytes, plan.CheckoutBytes), 10))
	var b strings.Builder
	var files, links int
	for _, e := range plan.Entries {
		switch e.Kind {
		case KindFile:
			files++
			fmt.Fprintf(&b, "%*d  %s\n", width, e.Size, listName(e.Path))
		case KindSymlink:
			links++
			fmt.Fprintf(&b, "%*d  %s -> %s\n", width, 0, listName(e.Path), listName(e.Target))
		}
	}
	fmt.Fprintf(&b, "%*d  total sent: %s, %s\n", width, plan.TotalBytes, count(files, "file"), count(links, "symlink"))
	if len(plan.Checkout) > 0 {
		b.WriteString("checked out of the sent .git in the guest:\n")
		for _, e := range plan.Checkout {
			fmt.Fprintf(&b, "%*d  %s\n", width, e.Size, listName(e.Path))
		}
		fmt.Fprintf(&b, "%*d  total checked out: %s\n", width, plan.CheckoutBytes, count(len(plan.Checkout), "file"))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
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

// count is "1 file", "2 files".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
