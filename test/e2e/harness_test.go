//go:build e2e

// Package e2e drives the real banger and bangerd binaries against real
// QEMU guests. Every test environment lives in a network namespace the
// harness creates (no uplink, no route out) and is removed afterwards.
// Run with: make test-e2e (root, qemu-system-x86_64, mmdebstrap).
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"banger/internal/model"
	"banger/internal/vmm"
)

// env is one isolated banger installation: its own BANGER_HOME and
// network namespace.
type env struct {
	t     testing.TB
	bin   string // directory with banger and bangerd
	home  string
	netns string
}

var binDir, faultBinDir string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("e2e tests need root (network namespaces, TAP devices, VMs); run them with: sudo make test-e2e")
		os.Exit(1)
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mmdebstrap", "ip", "ssh", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Printf("e2e tests need %s; run make deps\n", tool)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "banger-e2e-bin-")
	if err != nil {
		panic(err)
	}
	root := repoRoot()
	// The agent sits next to each bangerd, where image builds look for it.
	faultBinDir = filepath.Join(dir, "faultinject")
	for _, b := range []struct{ out, cmd, tags string }{
		{dir, "banger", ""}, {dir, "bangerd", ""}, {dir, "banger-agent", ""},
		// A bangerd that can be told to die at a named step (crash tests).
		{faultBinDir, "banger", "faultinject"}, {faultBinDir, "bangerd", "faultinject"}, {faultBinDir, "banger-agent", ""},
	} {
		build := exec.Command("go", "build", "-tags", b.tags, "-o", filepath.Join(b.out, b.cmd), "./cmd/"+b.cmd)
		build.Dir = root
		if b.cmd == "banger-agent" {
			build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as in images
		}
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Printf("build %s (tags %q): %v\n%s", b.cmd, b.tags, err, out)
			os.Exit(1)
		}
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// newEnv creates a namespace and an empty BANGER_HOME; cleanup stops the
// daemon, kills what it left (failing the test if anything was left),
// and removes the namespace.
func newEnv(t testing.TB) *env {
	t.Helper()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	e := &env{t: t, bin: binDir, home: t.TempDir(), netns: "banger-e2e-" + hex.EncodeToString(suffix)}
	if out, err := exec.Command("ip", "netns", "add", e.netns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "-n", e.netns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	t.Cleanup(func() {
		e.banger("daemon", "stop")
		for _, pid := range e.qemuPIDs() {
			t.Errorf("qemu pid %d left running at cleanup; killing it", pid)
			killPID(pid)
		}
		exec.Command("ip", "netns", "del", e.netns).Run()
	})
	return e
}

// result is a finished command.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// banger runs the CLI inside the namespace with the env's BANGER_HOME.
func (e *env) banger(args ...string) result {
	return e.bangerTimeout(15*time.Minute, args...)
}

func (e *env) bangerTimeout(timeout time.Duration, args ...string) result {
	return e.bangerEnv(timeout, nil, args...)
}

// bangerEnv runs the CLI with extra environment variables.
func (e *env) bangerEnv(timeout time.Duration, extraEnv []string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{"netns", "exec", e.netns, filepath.Join(e.bin, "banger")}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	cmd.Env = append(append(os.Environ(), "BANGER_HOME="+e.home), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.Stdin = strings.NewReader("")
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if exit, ok := err.(*exec.ExitError); ok {
		r.code = exit.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run banger %v: %v", args, err)
	}
	return r
}

// ok runs the CLI and fails the test unless it exits 0.
func (e *env) ok(args ...string) result {
	e.t.Helper()
	r := e.banger(args...)
	if r.code != 0 {
		e.t.Fatalf("banger %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// fails runs the CLI, wants a non-zero exit and a one-line error
// containing want.
func (e *env) fails(want string, args ...string) result {
	e.t.Helper()
	r := e.banger(args...)
	if r.code == 0 {
		e.t.Fatalf("banger %s: succeeded, want failure containing %q", strings.Join(args, " "), want)
	}
	msg := strings.TrimSpace(r.stderr)
	if strings.Count(msg, "\n") > 0 {
		e.t.Errorf("banger %s: error is %d lines, want one:\n%s", strings.Join(args, " "), strings.Count(msg, "\n")+1, msg)
	}
	if !strings.Contains(msg, want) {
		e.t.Errorf("banger %s: error %q does not contain %q", strings.Join(args, " "), msg, want)
	}
	return r
}

func (e *env) vms() []model.VMRecord {
	e.t.Helper()
	var vms []model.VMRecord
	r := e.ok("vm", "list", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &vms); err != nil {
		e.t.Fatalf("decode vm list: %v\n%s", err, r.stdout)
	}
	return vms
}

func (e *env) vm(name string) model.VMRecord {
	e.t.Helper()
	var rec model.VMRecord
	r := e.ok("vm", "show", "--json", name)
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil {
		e.t.Fatalf("decode vm show: %v\n%s", err, r.stdout)
	}
	return rec
}

// taps lists the TAP devices in the env's namespace.
func (e *env) taps() []string {
	out, err := exec.Command("ip", "-n", e.netns, "-o", "link", "show", "type", "tun").Output()
	if err != nil {
		e.t.Fatalf("list taps: %v", err)
	}
	var taps []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 1 {
			taps = append(taps, strings.TrimSuffix(strings.SplitN(fields[1], "@", 2)[0], ":"))
		}
	}
	return taps
}

// qemuPIDs lists QEMU processes started for this env (their command line
// holds the env's BANGER_HOME path).
func (e *env) qemuPIDs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		var pid int
		if _, err := fmt.Sscanf(ent.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(cmdline, []byte("qemu-system")) && bytes.Contains(cmdline, []byte(e.home)) && processAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (e *env) daemonPID() int {
	data, err := os.ReadFile(filepath.Join(e.home, "run", "bangerd.pid"))
	if err != nil {
		e.t.Fatalf("read daemon pid: %v", err)
	}
	var pid int
	fmt.Sscanf(string(data), "%d", &pid)
	return pid
}

// vmDirs lists the VM directories under the env's state dir.
func (e *env) vmDirs() []string {
	entries, err := os.ReadDir(filepath.Join(e.home, "state", "vms"))
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatalf("read vms dir: %v", err)
	}
	var names []string
	for _, ent := range entries {
		names = append(names, ent.Name())
	}
	return names
}

// assertClean fails when any VM, directory, TAP or QEMU process exists.
func (e *env) assertClean(context string) {
	e.t.Helper()
	if vms := e.vms(); len(vms) != 0 {
		e.t.Errorf("%s: %d vm records left, want 0", context, len(vms))
	}
	if dirs := e.vmDirs(); len(dirs) != 0 {
		e.t.Errorf("%s: vm directories left: %v", context, dirs)
	}
	if taps := e.taps(); len(taps) != 0 {
		e.t.Errorf("%s: taps left: %v", context, taps)
	}
	if pids := e.qemuPIDs(); len(pids) != 0 {
		e.t.Errorf("%s: qemu processes left: %v", context, pids)
	}
}

// imageCacheDir is where the e2e suite keeps a built default image
// between runs, keyed by a hash of the image recipe sources.
func imageCacheDir(t testing.TB) string {
	base := os.Getenv("BANGER_E2E_IMAGE_CACHE")
	if base == "" {
		base = "/var/cache/banger-e2e"
	}
	h := sha256.New()
	// The image holds the recipe and the agent built from these sources.
	root := repoRoot()
	var files []string
	for _, dir := range []string{"internal/image", "internal/agent", "cmd/banger-agent"} {
		filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_test.go") {
				files = append(files, p)
			}
			return nil
		})
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("hash recipe: %v", err)
		}
		rel, _ := filepath.Rel(root, f)
		io.WriteString(h, rel+"\x00")
		h.Write(data)
	}
	return filepath.Join(base, hex.EncodeToString(h.Sum(nil))[:16])
}

var artifactNames = []string{"rootfs.ext4", "work-seed.ext4", "vmlinuz", "initrd.img"}

// ensureImage gives the env the default image: registered from the
// suite's cache when a build of the same recipe exists, else built
// through banger (and then cached).
func (e *env) ensureImage() {
	e.t.Helper()
	cache := imageCacheDir(e.t)
	if _, err := os.Stat(filepath.Join(cache, "READY")); err == nil {
		e.ok("image", "register", "--name", model.DefaultImageName,
			"--rootfs", filepath.Join(cache, "rootfs.ext4"),
			"--work-seed", filepath.Join(cache, "work-seed.ext4"),
			"--kernel", filepath.Join(cache, "vmlinuz"),
			"--initrd", filepath.Join(cache, "initrd.img"))
		return
	}
	start := time.Now()
	r := e.ok("image", "build")
	e.t.Logf("image build took %s\n%s", time.Since(start).Round(time.Second), r.stderr)
	var img model.Image
	if err := json.Unmarshal([]byte(e.ok("image", "show", "--json", model.DefaultImageName).stdout), &img); err != nil {
		e.t.Fatalf("decode image: %v", err)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		e.t.Fatalf("cache image: %v", err)
	}
	for _, src := range []string{img.RootfsPath, img.WorkSeedPath, img.KernelPath, img.InitrdPath} {
		dst := filepath.Join(cache, filepath.Base(src))
		if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
			e.t.Fatalf("cache image: %v: %s", err, out)
		}
	}
	os.WriteFile(filepath.Join(cache, "READY"), nil, 0o644)
}

// processAlive reports whether pid runs (a zombie does not).
func processAlive(pid int) bool {
	st, err := vmm.ReadProcStat(pid)
	return err == nil && st.State != 'Z' && st.State != 'X'
}

// waitGone waits up to 10 s for pid to exit.
func waitGone(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not exit", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func killPID(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }
