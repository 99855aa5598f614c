//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"banger/internal/sshkey"
)

// BenchmarkBootRatio measures `banger vm start` until SSH answers against
// a bare qemu-system-x86_64 run with the same kernel, initrd, disks,
// command line and accelerator, probed for SSH the same way, in one run.
// It reports the medians and their ratio (target: banger/bare <= 1.15).
//
//	go test -tags e2e -run '^$' -bench BootRatio -benchtime 3x ./test/e2e/
func BenchmarkBootRatio(b *testing.B) {
	e := newEnv(b)
	e.ensureImage()
	e.ok("vm", "create", "--name", "bench", "--no-start")

	var bangerTimes, bareTimes []time.Duration
	var qemuArgs []string
	rec := e.vm("bench")
	for i := 0; i < b.N; i++ {
		start := time.Now()
		e.ok("vm", "start", "bench")
		bangerTimes = append(bangerTimes, time.Since(start))
		if qemuArgs == nil {
			qemuArgs = e.runningQEMUArgs()
		}
		e.ok("vm", "stop", "bench")

		bareTimes = append(bareTimes, e.bareBoot(qemuArgs, rec.Runtime.GuestIP))
	}
	bm, bb := median(bangerTimes), median(bareTimes)
	b.ReportMetric(bm.Seconds(), "banger-s")
	b.ReportMetric(bb.Seconds(), "bare-s")
	b.ReportMetric(bm.Seconds()/bb.Seconds(), "ratio")
	b.Logf("banger start->ssh: %v (median %v); bare qemu->ssh: %v (median %v); ratio %.3f", bangerTimes, bm, bareTimes, bb, bm.Seconds()/bb.Seconds())
	e.ok("vm", "delete", "bench")
}

// runningQEMUArgs returns the argv of the env's one running QEMU.
func (e *env) runningQEMUArgs() []string {
	pids := e.qemuPIDs()
	if len(pids) != 1 {
		e.t.Fatalf("want one qemu process, got %v", pids)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids[0]))
	if err != nil {
		e.t.Fatalf("read qemu cmdline: %v", err)
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

// bareBoot runs QEMU with args (minus daemonizing and the control socket)
// on a TAP made by hand, waits for SSH like banger does, and kills it.
func (e *env) bareBoot(args []string, ip string) time.Duration {
	var bare []string
	tap := ""
	for _, a := range args {
		for _, opt := range strings.Split(a, ",") {
			if v, ok := strings.CutPrefix(opt, "ifname="); ok {
				tap = v
			}
		}
	}
	if tap == "" {
		e.t.Fatalf("no tap in qemu args %q", args)
	}
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-daemonize":
			continue
		case "-pidfile", "-qmp":
			i++
			continue
		}
		bare = append(bare, args[i])
	}
	netns := func(cmd ...string) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", e.netns}, cmd...)...).CombinedOutput()
		if err != nil {
			e.t.Fatalf("%v: %v: %s", cmd, err, out)
		}
	}
	netns("ip", "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr")
	netns("ip", "link", "set", tap, "master", "br-fc", "up")
	defer netns("ip", "link", "del", tap)

	key, err := sshkey.Ensure(filepath.Join(e.home, "state", "ssh", "id_ed25519"))
	if err != nil {
		e.t.Fatalf("load key: %v", err)
	}
	start := time.Now()
	cmd := exec.Command("ip", append([]string{"netns", "exec", e.netns}, bare...)...)
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start bare qemu: %v", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err = inNetns(e.netns, func() error {
		return sshkey.WaitReady(ctx, ip+":22", key.Signer, ssh.InsecureIgnoreHostKey())
	})
	if err != nil {
		e.t.Fatalf("bare boot: %v", err)
	}
	return time.Since(start)
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkCreateNoStart measures `banger vm create --no-start` (CLI to
// answer) for images with a 1 GiB and an 8 GiB rootfs. The system overlay
// is copy-on-write, so both should cost the same (target: < 100 ms median).
//
//	go test -tags e2e -run '^$' -bench CreateNoStart -benchtime 15x ./test/e2e/
func BenchmarkCreateNoStart(b *testing.B) {
	e := newEnv(b)
	e.ensureImage()
	cache := imageCacheDir(b)
	dir := b.TempDir()
	sizes := []string{"1G", "8G"}
	for _, size := range sizes {
		// The rootfs content does not matter to create (nothing boots):
		// an empty ext4 filesystem of the given size stands in for it.
		rootfs := filepath.Join(dir, "rootfs-"+size+".ext4")
		if out, err := exec.Command("truncate", "-s", size, rootfs).CombinedOutput(); err != nil {
			b.Fatalf("truncate: %v: %s", err, out)
		}
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "banger-root", rootfs).CombinedOutput(); err != nil {
			b.Fatalf("mkfs.ext4: %v: %s", err, out)
		}
		e.ok("image", "register", "--name", "img-"+strings.ToLower(size), "--rootfs", rootfs,
			"--work-seed", filepath.Join(cache, "work-seed.ext4"),
			"--kernel", filepath.Join(cache, "vmlinuz"), "--initrd", filepath.Join(cache, "initrd.img"))
	}
	e.ok("vm", "list") // daemon up before timing
	times := map[string][]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, size := range sizes {
			name := fmt.Sprintf("c%s-%d", strings.ToLower(size), i)
			start := time.Now()
			e.ok("vm", "create", "--no-start", "--image", "img-"+strings.ToLower(size), "--name", name)
			times[size] = append(times[size], time.Since(start))
			e.ok("vm", "delete", name)
		}
	}
	m1, m8 := median(times["1G"]), median(times["8G"])
	b.ReportMetric(float64(m1.Microseconds())/1000, "ms-1G")
	b.ReportMetric(float64(m8.Microseconds())/1000, "ms-8G")
	b.ReportMetric(m8.Seconds()/m1.Seconds(), "ratio-8G/1G")
	b.Logf("create --no-start median: 1G image %v, 8G image %v", m1, m8)
}

// BenchmarkReconcile measures the daemon's start-up reconcile with 0, 10
// and 50 VM records (created, never started) and the daemon's resident
// memory once it is idle. Targets: linear, under 1 s at 50; RSS under 40 MiB.
//
//	go test -tags e2e -run '^$' -bench Reconcile -benchtime 1x ./test/e2e/
func BenchmarkReconcile(b *testing.B) {
	e := newEnv(b)
	e.ensureImage()
	created := 0
	for _, n := range []int{0, 10, 50} {
		for ; created < n; created++ {
			e.ok("vm", "create", "--no-start", "--name", fmt.Sprintf("r%d", created))
		}
		var durations []time.Duration
		var rss int64
		for i := 0; i < b.N; i++ {
			e.ok("daemon", "stop")
			e.ok("vm", "list")
			durations = append(durations, e.lastReconcile())
			rss = e.daemonRSS()
		}
		d := median(durations)
		b.ReportMetric(float64(d.Microseconds())/1000, fmt.Sprintf("reconcile-ms-%d", n))
		b.ReportMetric(float64(rss)/(1<<20), fmt.Sprintf("rss-MiB-%d", n))
		b.Logf("%d records: reconcile %v, daemon RSS %.1f MiB", n, d, float64(rss)/(1<<20))
	}
}

// lastReconcile reads the duration of the last reconcile from the daemon log.
func (e *env) lastReconcile() time.Duration {
	data, err := os.ReadFile(filepath.Join(e.home, "logs", "bangerd.log"))
	if err != nil {
		e.t.Fatalf("read daemon log: %v", err)
	}
	var last time.Duration = -1
	for _, line := range strings.Split(string(data), "\n") {
		var rec struct {
			Msg        string  `json:"msg"`
			DurationMS float64 `json:"duration_ms"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "reconciled" {
			last = time.Duration(rec.DurationMS * float64(time.Millisecond))
		}
	}
	if last < 0 {
		e.t.Fatalf("no reconcile in the daemon log")
	}
	return last
}

// daemonRSS reads the daemon's resident memory in bytes.
func (e *env) daemonRSS() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.daemonPID()))
	if err != nil {
		e.t.Fatalf("read daemon status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}
