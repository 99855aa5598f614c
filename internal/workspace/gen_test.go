package workspace

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"banger/internal/testutil/gitgen"
)

// Generated repositories shared by the benchmarks of one run, removed
// by TestMain.
var (
	benchMu    sync.Mutex
	benchRepos = map[gitgen.Spec]string{}
)

// benchRepo returns the repository for spec, generating it on first use.
func benchRepo(tb testing.TB, spec gitgen.Spec) string {
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
	gitgen.Generate(tb, filepath.Join(dir, "repo"), spec)
	return filepath.Join(dir, "repo")
}

func cleanupBenchRepos() {
	benchMu.Lock()
	defer benchMu.Unlock()
	for _, dir := range benchRepos {
		os.RemoveAll(dir)
	}
}
