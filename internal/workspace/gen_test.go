package workspace

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// historySpec shapes a generated repository: files tracked files of
// fileSize incompressible bytes each, then commits more commits that
// each rewrite churn of them, so history grows by about
// commits*churn*fileSize bytes while the tree stays files*fileSize.
type historySpec struct {
	files, fileSize, commits, churn int
}

func (s historySpec) trackedBytes() int64 { return int64(s.files) * int64(s.fileSize) }

// generateHistory builds the repository described by spec at dir with
// git fast-import, then checks out its working tree.
func generateHistory(tb testing.TB, dir string, spec historySpec) {
	tb.Helper()
	run(tb, "/", nil, "git", "init", "-q", dir)
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
	run(tb, dir, nil, "git", "reset", "-q", "--hard", "main")
}

func writeFastImport(w io.Writer, spec historySpec) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	r := rand.New(rand.NewPCG(7, 11))
	buf := make([]byte, spec.fileSize)
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
		for i := 0; i < spec.files; i++ {
			if m, ok := changes[i]; ok {
				fmt.Fprintf(bw, "M 100644 :%d data/f%04d.bin\n", m, i)
			}
		}
		bw.WriteByte('\n')
	}
	first := map[int]int{}
	for i := 0; i < spec.files; i++ {
		first[i] = blob()
	}
	commit(0, first)
	for c := 1; c <= spec.commits; c++ {
		changes := map[int]int{}
		for len(changes) < spec.churn {
			changes[r.IntN(spec.files)] = 0
		}
		for i := 0; i < spec.files; i++ {
			if _, ok := changes[i]; ok {
				changes[i] = blob()
			}
		}
		commit(c, changes)
	}
	return bw.Flush()
}

// Generated repositories shared by the benchmarks of one run, removed
// by TestMain.
var (
	benchMu    sync.Mutex
	benchRepos = map[historySpec]string{}
)

// benchRepo returns the repository for spec, generating it on first use.
func benchRepo(tb testing.TB, spec historySpec) string {
	tb.Helper()
	benchMu.Lock()
	defer benchMu.Unlock()
	if dir, ok := benchRepos[spec]; ok {
		return filepath.Join(dir, "repo")
	}
	dir, err := os.MkdirTemp("", "workspace-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	benchRepos[spec] = dir
	generateHistory(tb, filepath.Join(dir, "repo"), spec)
	return filepath.Join(dir, "repo")
}

func cleanupBenchRepos() {
	benchMu.Lock()
	defer benchMu.Unlock()
	for _, dir := range benchRepos {
		os.RemoveAll(dir)
	}
}
