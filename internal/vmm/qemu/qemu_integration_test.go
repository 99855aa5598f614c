//go:build integration

package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"banger/internal/hostexec"
	"banger/internal/testutil/privnet"
	"banger/internal/vmm"
)

// These tests boot real guests with QEMU. They need root and run inside
// a network namespace of their own: TestMain re-executes the test binary
// under `unshare -n`, and the bridge and TAP are made there, with no
// route out of the machine. The guest image comes from
// BANGER_TEST_IMAGE_DIR (default /var/cache/banger-test/image, where the
// image package's build test leaves its image), which must hold
// READY, rootfs.ext4, work-seed.ext4, vmlinuz, initrd.img and id_ed25519.

const (
	testTap   = "tap-bqt0"
	testGuest = "172.16.0.5"
	testMAC   = "02:ab:cd:ef:01:23"
)

func TestMain(m *testing.M) { privnet.Main(m) }

// requireNetns skips without root and fails unless the test runs in a
// network namespace other than the machine's.
func requireNetns(t *testing.T) {
	t.Helper()
	privnet.Require(t, "run `sudo go test -tags integration ./internal/vmm/qemu/`")
}

var netSetUp bool

// setupNetwork makes a bridge holding the gateway address and a TAP in
// the test's namespace, once.
func setupNetwork(t *testing.T) {
	t.Helper()
	requireNetns(t)
	if netSetUp {
		return
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "br-bqt", "type", "bridge"},
		{"addr", "add", "172.16.0.1/24", "dev", "br-bqt"},
		{"link", "set", "br-bqt", "up"},
		{"tuntap", "add", "dev", testTap, "mode", "tap"},
		{"link", "set", testTap, "master", "br-bqt", "up"},
	} {
		if _, err := hostexec.Run(t.Context(), "ip", args...); err != nil {
			t.Fatalf("set up test network: %v", err)
		}
	}
	netSetUp = true
}

type testImage struct{ dir string }

func (im testImage) file(name string) string { return filepath.Join(im.dir, name) }

func requireImage(t *testing.T) testImage {
	t.Helper()
	dir := os.Getenv("BANGER_TEST_IMAGE_DIR")
	if dir == "" {
		dir = "/var/cache/banger-test/image"
	}
	if _, err := os.Stat(filepath.Join(dir, "READY")); err != nil {
		t.Skipf("no guest image: %s/READY missing; run the image build test first (go test -tags integration ./internal/image/) or set BANGER_TEST_IMAGE_DIR", dir)
	}
	return testImage{dir: dir}
}

// guestSpec prepares a VM directory with a qcow2 overlay over the image's
// rootfs and a copy of its work seed; the image itself is never written.
func guestSpec(t *testing.T, im testImage, withNet bool) vmm.Spec {
	t.Helper()
	dir, err := os.MkdirTemp("", "bqt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	system := filepath.Join(dir, "system.qcow2")
	work := filepath.Join(dir, "work.ext4")
	if _, err := hostexec.Run(t.Context(), "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
		"-b", im.file("rootfs.ext4"), system, "8G"); err != nil {
		t.Fatal(err)
	}
	if _, err := hostexec.Run(t.Context(), "cp", "--sparse=always", im.file("work-seed.ext4"), work); err != nil {
		t.Fatal(err)
	}
	spec := vmm.Spec{
		ID:        "0123456789abcdef",
		Name:      "qtest",
		VCPUs:     2,
		MemoryMiB: 1024,
		Kernel:    im.file("vmlinuz"),
		Initrd:    im.file("initrd.img"),
		Cmdline: "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1 " +
			"banger.ip=" + testGuest + "/24 banger.gw=172.16.0.1 banger.dns=172.16.0.1 " +
			"banger.hostname=qtest banger.mac=" + testMAC,
		Disks: []vmm.Disk{
			{ID: "system", Path: system, Format: "qcow2"},
			{ID: "work", Path: work, Format: "raw"},
		},
		Dir:         dir,
		ConsoleLog:  filepath.Join(dir, "console.log"),
		AgentSocket: filepath.Join(dir, "agent.sock"),
	}
	if withNet {
		spec.TapDevice, spec.MAC = testTap, testMAC
	}
	return spec
}

// startGuest starts spec and kills the machine when the test ends.
func startGuest(t *testing.T, d *Driver, spec vmm.Spec) vmm.Handle {
	t.Helper()
	h, err := d.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := vmm.Kill(ctx, h); err != nil {
			t.Errorf("kill qemu at cleanup: %v", err)
		}
		if t.Failed() {
			if data, err := os.ReadFile(spec.ConsoleLog); err == nil {
				t.Logf("console log tail:\n%s", tail(string(data), 3000))
			}
		}
	})
	return h
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// waitConsole waits until the console log, without its colour codes,
// contains one of markers.
func waitConsole(ctx context.Context, path string, markers ...string) (string, error) {
	for {
		data, _ := os.ReadFile(path)
		text := ansiEscape.ReplaceAllString(string(data), "")
		for _, m := range markers {
			if strings.Contains(text, m) {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("console %s never showed %q: %w", path, markers, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitSSHBanner waits until addr answers with an SSH banner.
func waitSSHBanner(ctx context.Context, addr string) error {
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			line, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if strings.HasPrefix(line, "SSH-2.0-") {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no ssh banner from %s: %w", addr, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func guestSSH(t *testing.T, im testImage, command string) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "id_ed25519")
	data, err := os.ReadFile(im.file("id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := hostexec.Run(t.Context(), "ssh", "-i", key, "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
		"-o", "LogLevel=ERROR", "root@"+testGuest, command)
	if err != nil {
		t.Fatalf("ssh %q: %v", command, err)
	}
	return string(out)
}

// TestBootShutdown boots the image with TCG, logs in over SSH, checks the
// disks and the agent port, then powers the guest off through QMP.
func TestBootShutdown(t *testing.T) {
	im := requireImage(t)
	setupNetwork(t)
	d := New(Options{Accel: "tcg"})
	spec := guestSpec(t, im, true)

	start := time.Now()
	h := startGuest(t, d, spec)
	t.Logf("qemu running after %v (pid %d)", time.Since(start).Round(time.Millisecond), h.PID)

	bootCtx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	marker, err := waitConsole(bootCtx, spec.ConsoleLog, "Started ssh.service")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("console shows %q after %v", marker, time.Since(start).Round(time.Millisecond))
	if err := waitSSHBanner(bootCtx, testGuest+":22"); err != nil {
		t.Fatal(err)
	}
	t.Logf("sshd answers after %v", time.Since(start).Round(time.Millisecond))

	if !vmm.Alive(h) {
		t.Fatal("got machine not alive, want alive")
	}
	if st, err := d.Status(t.Context(), h); err != nil || st != "running" {
		t.Errorf("got status %q, %v, want running", st, err)
	}

	out := guestSSH(t, im, "findmnt -no SOURCE /; findmnt -no SOURCE /root; ls /dev/virtio-ports/; hostname")
	t.Logf("guest says:\n%s", out)
	for _, want := range []string{"/dev/vda", "/dev/vdb", "banger.agent", "qtest"} {
		if !strings.Contains(out, want) {
			t.Errorf("got guest output %q, want it to contain %q", out, want)
		}
	}
	if conn, err := net.Dial("unix", spec.AgentSocket); err != nil {
		t.Errorf("dial agent socket: %v", err)
	} else {
		conn.Close()
	}

	downAt := time.Now()
	if err := d.Shutdown(t.Context(), h); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	waitCtx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := vmm.WaitExit(waitCtx, h); err != nil {
		t.Fatalf("guest did not power off within 60s of system_powerdown: %v", err)
	}
	t.Logf("powered off %v after system_powerdown", time.Since(downAt).Round(time.Millisecond))
	if _, err := os.Stat(h.ControlSocket); err == nil {
		t.Errorf("got qmp socket left after exit, want qemu to remove it")
	}
}

// TestStartFailures: a missing kernel is refused before launch; a kernel
// QEMU cannot load fails in QEMU, whose message reaches the error, and
// nothing is left running.
func TestStartFailures(t *testing.T) {
	im := requireImage(t)
	requireNetns(t)
	d := New(Options{Accel: "tcg"})

	t.Run("missing kernel", func(t *testing.T) {
		spec := guestSpec(t, im, false)
		spec.Kernel = filepath.Join(spec.Dir, "vmlinuz-missing")
		_, err := d.Start(t.Context(), spec)
		if err == nil || !strings.Contains(err.Error(), `kernel "`+spec.Kernel+`": no such file`) {
			t.Fatalf("got err %v, want one naming the missing kernel", err)
		}
		assertNothingLeft(t, spec)
	})
	t.Run("unloadable kernel", func(t *testing.T) {
		spec := guestSpec(t, im, false)
		spec.Kernel = filepath.Join(spec.Dir, "garbage")
		if err := os.WriteFile(spec.Kernel, []byte("not a kernel"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := d.Start(t.Context(), spec)
		assertQEMUSaid(t, err, "kernel")
		assertNothingLeft(t, spec)
	})
	t.Run("tap is not a tap", func(t *testing.T) {
		setupNetwork(t)
		spec := guestSpec(t, im, true)
		spec.TapDevice = "br-bqt"
		_, err := d.Start(t.Context(), spec)
		assertQEMUSaid(t, err, "br-bqt")
		assertNothingLeft(t, spec)
	})
}

// assertQEMUSaid checks that err carries QEMU's own stderr, naming want.
func assertQEMUSaid(t *testing.T, err error, want string) {
	t.Helper()
	var herr *hostexec.Error
	if !errors.As(err, &herr) || !strings.Contains(herr.Stderr, want) {
		t.Fatalf("got err %v, want qemu's stderr naming %q", err, want)
	}
	if !strings.Contains(err.Error(), strings.TrimSpace(herr.Stderr)) {
		t.Errorf("got err %q, want it to show qemu's message %q", err, herr.Stderr)
	}
	t.Logf("error: %v", err)
}

func assertNothingLeft(t *testing.T, spec vmm.Spec) {
	t.Helper()
	paths, _ := PathsFor(spec.Dir)
	for _, f := range []string{paths.PIDFile, paths.QMPSocket, spec.AgentSocket} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("got %s left behind, want it removed", f)
		}
	}
	out, _ := exec.Command("pgrep", "-f", paths.PIDFile).Output()
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("got qemu processes %s for %s, want none", s, spec.Dir)
	}
}

// TestKillAndRestart: the machine outlives the Start context, vmm.Kill
// ends it, and a new Start in the same directory copes with the files the
// killed QEMU left.
func TestKillAndRestart(t *testing.T) {
	im := requireImage(t)
	requireNetns(t)
	d := New(Options{Accel: "tcg"})
	spec := guestSpec(t, im, false)

	ctx, cancel := context.WithCancel(t.Context())
	h, err := d.Start(ctx, spec)
	cancel()
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	time.Sleep(time.Second)
	if !vmm.Alive(h) {
		t.Fatal("got machine dead after its start context ended, want it running")
	}
	if st, err := vmm.ReadProcStat(h.PID); err != nil || st.StartTime != h.StartTime {
		t.Errorf("got proc start time %d (%v), want %d", st.StartTime, err, h.StartTime)
	}

	killCtx, cancelKill := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancelKill()
	if err := vmm.Kill(killCtx, h); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if vmm.Alive(h) {
		t.Fatal("got machine alive after kill, want dead")
	}
	if _, err := d.Status(t.Context(), h); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("got status err %v, want ErrNotRunning", err)
	}

	h2 := startGuest(t, d, spec)
	if h2.PID == h.PID || !vmm.Alive(h2) {
		t.Fatalf("got restarted handle %+v, want a new live process", h2)
	}
	if err := d.Quit(t.Context(), h2); err != nil {
		t.Fatalf("quit: %v", err)
	}
	waitCtx, cancelWait := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancelWait()
	if err := vmm.WaitExit(waitCtx, h2); err != nil {
		t.Fatalf("qemu still running after quit: %v", err)
	}
}
