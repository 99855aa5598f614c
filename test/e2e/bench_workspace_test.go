//go:build e2e

package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"banger/internal/testutil/gitgen"
)

// BenchmarkWorkspacePrepare copies a generated repository (about 200 MB
// of history, 5 MB tracked) into a running VM with vm workspace prepare,
// against the plain pipelines measured in the same run:
// shallow_overlay against `git archive HEAD | ssh VM tar -x` (target
// ratio <= 1.0) and full_copy against `tar c | ssh VM tar x` (<= 1.1).
//
//	go test -tags e2e -run '^$' -bench WorkspacePrepare -benchtime 5x ./test/e2e/
func BenchmarkWorkspacePrepare(b *testing.B) {
	e := newEnv(b)
	e.ensureImage()
	repo := filepath.Join(b.TempDir(), "bigrepo")
	gitgen.Generate(b, repo, gitgen.Spec{Files: 100, FileSize: 50 << 10, Commits: 200, Churn: 20})
	e.ok("vm", "run", "-d", "--name", "wsb")
	ip := e.vm("wsb").Runtime.GuestIP
	ssh := "ssh -i " + filepath.Join(e.home, "state", "ssh", "id_ed25519") +
		" -o UserKnownHostsFile=" + filepath.Join(e.home, "state", "ssh", "known_hosts") +
		" -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR root@" + ip
	pipeline := func(script string) time.Duration {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", e.netns, "sh", "-c", script).CombinedOutput()
		if err != nil {
			b.Fatalf("%s: %v\n%s", script, err, out)
		}
		return time.Since(start)
	}
	timed := func(args ...string) time.Duration {
		start := time.Now()
		e.ok(args...)
		return time.Since(start)
	}
	var shallow, archive, full, tarPipe []time.Duration
	for i := 0; i < b.N; i++ {
		shallow = append(shallow, timed("vm", "workspace", "prepare", "wsb", repo))
		archive = append(archive, pipeline("git -C "+repo+" archive HEAD | "+ssh+" 'rm -rf /root/base && mkdir -p /root/base && tar -x -C /root/base'"))
		full = append(full, timed("vm", "workspace", "prepare", "wsb", repo, "--mode", "full_copy"))
		tarPipe = append(tarPipe, pipeline("tar -C "+repo+" -c . | "+ssh+" 'rm -rf /root/fc && mkdir -p /root/fc && tar -x -C /root/fc'"))
	}
	s, a, f, t := median(shallow), median(archive), median(full), median(tarPipe)
	b.ReportMetric(s.Seconds(), "shallow-s")
	b.ReportMetric(a.Seconds(), "git-archive-s")
	b.ReportMetric(s.Seconds()/a.Seconds(), "shallow/archive")
	b.ReportMetric(f.Seconds(), "full-s")
	b.ReportMetric(t.Seconds(), "tar-s")
	b.ReportMetric(f.Seconds()/t.Seconds(), "full/tar")
	b.Logf("shallow_overlay %v vs git archive %v; full_copy %v vs tar %v", shallow, archive, full, tarPipe)
	e.ok("vm", "delete", "wsb")
}
