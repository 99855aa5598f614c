package workspace

import (
	"path/filepath"
	"strconv"
	"testing"

	"banger/internal/model"
	"banger/internal/testutil/gitgen"
)

// benchSpec is a repository with a small tree (100 files of 50 KiB, about
// 5 MB) and a long history (200 commits rewriting 20 files each, about
// 200 MB of incompressible blobs).
var benchSpec = gitgen.Spec{Files: 100, FileSize: 50 << 10, Commits: 200, Churn: 20}

// BenchmarkPrepare measures a prepare into a local "guest" directory
// (plan, tar stream through a pipe, ExtractCommand) against plain tools
// doing a comparable copy: shallow_overlay against `git archive HEAD |
// tar -x`, full_copy against `tar -c | tar -x` of the whole directory.
// Every variant replaces the same target directory each time. Metrics:
// sent/tracked is the archive's size over the tracked bytes; MB-sent is
// the archive's size.
//
//	go test -run '^$' -bench Prepare -benchtime 5x ./internal/workspace/
func BenchmarkPrepare(b *testing.B) {
	needTools(b)
	root := benchRepo(b, benchSpec)
	repo := inspect(b, root)
	tracked := float64(benchSpec.TrackedBytes())
	guest := filepath.Join(b.TempDir(), "guest", "repo")

	prepare := func(mode model.WorkspacePrepareMode) func(b *testing.B) {
		return func(b *testing.B) {
			var st Stats
			for b.Loop() {
				plan, err := NewPlan(b.Context(), repo, Options{Mode: mode})
				if err != nil {
					b.Fatalf("NewPlan: %v", err)
				}
				st = extract(b, plan, guest)
				plan.Close()
			}
			b.ReportMetric(float64(st.ArchiveBytes)/tracked, "sent/tracked")
			b.ReportMetric(float64(st.ArchiveBytes)/1e6, "MB-sent")
		}
	}
	shell := func(script string) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				run(b, "/", nil, "sh", "-c", script, "sh", root, guest)
			}
			out := run(b, "/", nil, "sh", "-c", sizeOf(script), "sh", root, guest)
			n, err := strconv.ParseFloat(string(trimNL(out)), 64)
			if err != nil {
				b.Fatalf("size of the stream: %v", err)
			}
			b.ReportMetric(n/tracked, "sent/tracked")
			b.ReportMetric(n/1e6, "MB-sent")
		}
	}
	b.Run("shallow_overlay", prepare(model.WorkspacePrepareModeShallowOverlay))
	b.Run("git_archive", shell(gitArchiveCopy))
	b.Run("full_copy", prepare(model.WorkspacePrepareModeFullCopy))
	b.Run("tar_copy", shell(tarCopy))
}

// The baselines: $1 is the repository, $2 the target directory.
const (
	gitArchiveCopy = `rm -rf -- "$2" && mkdir -p -- "$2" && git -C "$1" archive HEAD | tar -x -f - -C "$2"`
	tarCopy        = `rm -rf -- "$2" && mkdir -p -- "$2" && tar -c -f - -C "$1" . | tar -x -f - -C "$2"`
)

// sizeOf turns a baseline into a script printing the size of its stream.
func sizeOf(script string) string {
	switch script {
	case gitArchiveCopy:
		return `git -C "$1" archive HEAD | wc -c`
	default:
		return `tar -c -f - -C "$1" . | wc -c`
	}
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
