// Package gitgen generates git repositories with a large history and a
// small tree, fast (git fast-import), for tests and benchmarks of
// workspace transfers. Test code only.
package gitgen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
)

// Spec shapes a generated repository: Files tracked files of FileSize
// incompressible bytes each, then Commits more commits that each
// rewrite Churn of them, so history grows by about
// Commits*Churn*FileSize bytes while the tree stays Files*FileSize.
type Spec struct {
	Files, FileSize, Commits, Churn int
}

// TrackedBytes is the size of the tree.
func (s Spec) TrackedBytes() int64 { return int64(s.Files) * int64(s.FileSize) }

// Generate builds the repository described by spec at dir with
// git fast-import, then checks out its working tree.
func Generate(tb testing.TB, dir string, spec Spec) {
	tb.Helper()
	gitRun(tb, "/", "init", "-q", "-b", "main", dir)
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	werr := writeFastImport(stdin, spec)
	stdin.Close()
	if err := cmd.Wait(); err != nil || werr != nil {
		tb.Fatalf("git fast-import: %v, write: %v", err, werr)
	}
	gitRun(tb, dir, "reset", "-q", "--hard", "main")
}

func writeFastImport(w io.Writer, spec Spec) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	r := rand.New(rand.NewPCG(7, 11))
	buf := make([]byte, spec.FileSize)
	mark := 0
	blob := func() int {
		for i := 0; i+8 <= len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
		}
		mark++
		fmt.Fprintf(bw, "blob\nmark :%d\ndata %d\n", mark, len(buf))
		bw.Write(buf)
		bw.WriteByte('\n')
		return mark
	}
	commit := func(n int, changes map[int]int) {
		mark++
		msg := fmt.Sprintf("commit %d", n)
		fmt.Fprintf(bw, "commit refs/heads/main\nmark :%d\ncommitter Gen <gen@example.invalid> %d +0000\ndata %d\n%s\n",
			mark, 1700000000+n, len(msg), msg)
		if n > 0 {
			fmt.Fprintf(bw, "from :%d\n", mark-len(changes)-1)
		}
		for i := 0; i < spec.Files; i++ {
			if m, ok := changes[i]; ok {
				fmt.Fprintf(bw, "M 100644 :%d data/f%04d.bin\n", m, i)
			}
		}
		bw.WriteByte('\n')
	}
	first := map[int]int{}
	for i := 0; i < spec.Files; i++ {
		first[i] = blob()
	}
	commit(0, first)
	for c := 1; c <= spec.Commits; c++ {
		changes := map[int]int{}
		for len(changes) < spec.Churn {
			changes[r.IntN(spec.Files)] = 0
		}
		for i := 0; i < spec.Files; i++ {
			if _, ok := changes[i]; ok {
				changes[i] = blob()
			}
		}
		commit(c, changes)
	}
	return bw.Flush()
}

func gitRun(tb testing.TB, dir string, args ...string) {
	tb.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("git %v: %v\n%s", args, err, out)
	}
}
