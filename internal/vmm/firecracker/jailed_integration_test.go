//go:build integration

package firecracker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"banger/internal/paths"
	"banger/internal/vmm"
	"banger/internal/vmm/firecracker/fctest"
)

// The jailed tests run the driver's jailer path for real, with no guest:
// the fake jailer (this test binary, fctest.JailerMain) builds each jail
// as the jailer does (new mount namespace, pivot_root, device nodes,
// ownership) and runs the fake Firecracker in it as jailUID:jailGID; the
// fake Firecracker (fakefc, built static because it runs inside the
// jail) validates every request against the API specification and opens
// the files it is given as Firecracker does. They need root:
// `sudo go test -tags integration ./internal/vmm/firecracker/`.

const jailUID, jailGID = 65534, 65534 // nobody:nogroup

// fakeRelease is the file name of the fake Firecracker, as a release
// archive names the binary; the driver runs it through a "firecracker"
// link, and the jailer names the jails' directory after the target.
const fakeRelease = "firecracker-v1.7.0-x86_64"

// buildFakeFirecracker builds fakefc as a static binary.
func buildFakeFirecracker(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), fakeRelease)
	cmd := exec.Command("go", "build", "-o", out, "banger/internal/vmm/firecracker/fctest/cmd/fakefc")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the fake firecracker: %v: %s", err, msg)
	}
	return out
}

// jailedHost is a jailer-enabled driver over the fakes, and the files
// its machines use.
type jailedHost struct {
	d        *Driver
	opts     Options
	release  string // the fake Firecracker binary the link points at
	record   string // requests the fake Firecrackers received
	execName string // the jails' directory under the chroot base
	shmDir   string // a second filesystem for a disk, "" when none
}

// newJailedHost makes a driver whose Firecracker (a link to release)
// and jailer report version, with the fakes' knobs in env (EnvFailPath,
// EnvSpec...). The chroot base is deep enough that the API socket's path
// in it is longer than a socket address holds.
func newJailedHost(t *testing.T, release, version string, env map[string]string) *jailedHost {
	t.Helper()
	specPath, self := fakeBinaries(t)
	bin := t.TempDir()
	fc := filepath.Join(bin, "firecracker")
	if err := os.Symlink(release, fc); err != nil {
		t.Fatal(err)
	}
	jailer := filepath.Join(bin, "jailer")
	script := fmt.Sprintf("#!/bin/sh\nexport %s=1\nexec %q \"$@\"\n", fakeJailerEnv, self)
	if err := os.WriteFile(jailer, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h := &jailedHost{release: release, record: filepath.Join(t.TempDir(), "requests.jsonl"), execName: filepath.Base(release)}
	knobs := map[string]string{fctest.EnvSpec: specPath, fctest.EnvVersion: version, fctest.EnvRecord: h.record}
	for _, k := range []string{fctest.EnvFailPath, fctest.EnvIgnoreCAD, fctest.EnvDelayStart, fctest.EnvJailerVersion, fctest.EnvJailerNoPIDFile} {
		knobs[k] = ""
	}
	for k, v := range env {
		knobs[k] = v
	}
	for k, v := range knobs {
		t.Setenv(k, v) // the driver's processes inherit them
	}
	base := filepath.Join(t.TempDir(), strings.Repeat("j", 70))
	h.opts = Options{Binary: fc, Jailer: JailerOptions{Enabled: true, Binary: jailer, ChrootBase: base, UID: jailUID, GID: jailGID}}
	h.d = h.newDriver()
	if shm, err := os.MkdirTemp("/dev/shm", "bfj"); err == nil {
		t.Cleanup(func() { os.RemoveAll(shm) })
		if !sameFS(shm, t.TempDir()) {
			h.shmDir = shm
		}
	}
	return h
}

// newDriver is another driver on the same host: the daemon restarted.
func (h *jailedHost) newDriver() *Driver {
	d := New(h.opts)
	d.checkTap = func(string) error { return nil } // the fake opens no TAP
	return d
}

// newSpec returns a machine with every optional device and a fresh id,
// whose files exist: the work disk on a second filesystem where there is
// one (the driver bind-mounts it into the jail), the writable disks
// readable by root only (the driver gives them to the jail's user), the
// read-only disk readable by all (it keeps its owner).
func (h *jailedHost) newSpec(t *testing.T) vmm.Spec {
	t.Helper()
	id := make([]byte, 4)
	rand.Read(id)
	data := t.TempDir()
	vmDir, err := os.MkdirTemp("/tmp", "bfj")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(vmDir) })
	spec := fullSpec()
	spec.ID = "jt-" + hex.EncodeToString(id)
	spec.Kernel = filepath.Join(data, "vmlinux")
	spec.Initrd = filepath.Join(data, "initrd.img")
	spec.Dir = vmDir
	spec.ConsoleLog = filepath.Join(vmDir, "console.log")
	spec.AgentSocket = filepath.Join(vmDir, "agent.sock")
	for i := range spec.Disks {
		dir := data
		if spec.Disks[i].ID == "work" && h.shmDir != "" {
			dir = h.shmDir
		}
		spec.Disks[i].Path = filepath.Join(dir, spec.ID+"-"+spec.Disks[i].ID+".img")
		mode := os.FileMode(0o600)
		if spec.Disks[i].ReadOnly {
			mode = 0o644
		}
		if err := os.WriteFile(spec.Disks[i].Path, []byte(spec.Disks[i].ID+" data"), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(spec.Kernel, []byte("\x7fELF fake kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not readable by others: the driver copies it into the jail.
	if err := os.WriteFile(spec.Initrd, []byte("initrd"), 0o600); err != nil {
		t.Fatal(err)
	}
	return spec
}

func (h *jailedHost) jail(spec vmm.Spec) Jail {
	return Jail{Base: h.opts.Jailer.ChrootBase, ExecName: h.execName, ID: spec.ID}
}

// start starts spec and kills it when the test ends.
func (h *jailedHost) start(t *testing.T, spec vmm.Spec) vmm.Handle {
	t.Helper()
	hd, err := h.d.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("start jailed vm: %v", err)
	}
	t.Cleanup(func() { vmm.Kill(context.Background(), hd) })
	return hd
}

func TestJailedDriver(t *testing.T) {
	requireRoot(t)
	release := buildFakeFirecracker(t)
	for _, version := range []string{"1.7.0", "1.6.0"} {
		t.Run("lifecycle "+version, func(t *testing.T) { testJailedLifecycle(t, release, version) })
		t.Run("failed starts "+version, func(t *testing.T) { testJailedFailedStarts(t, release, version) })
		t.Run("reap "+version, func(t *testing.T) { testJailedReap(t, release, version) })
	}
}

// testJailedLifecycle starts a jailed machine, checks the jail, the
// process and every way the daemon reaches the machine, restarts the
// daemon, stops the machine and deletes its jail.
func testJailedLifecycle(t *testing.T, release, version string) {
	h := newJailedHost(t, release, version, nil)
	spec := h.newSpec(t)
	j := h.jail(spec)
	hd := h.start(t, spec)

	// The API socket lies in the jail, further than a socket address
	// reaches: the driver dials it through a short alias.
	if hd.ControlSocket != filepath.Join(j.Root(), apiSockName) || len(hd.ControlSocket) <= paths.MaxSocketPath {
		t.Errorf("got control socket %s (%d bytes), want %s, longer than %d bytes", hd.ControlSocket, len(hd.ControlSocket),
			filepath.Join(j.Root(), apiSockName), paths.MaxSocketPath)
	}
	info, err := h.d.Status(t.Context(), hd)
	if err != nil || info.State != StateRunning || info.ID != spec.ID || info.VMMVersion != version {
		t.Errorf("got status %+v, %v, want Running, id %s (the jailer's --id), version %s", info, err, spec.ID, version)
	}

	checkJailedProcess(t, hd, j, version)
	checkJailContents(t, h, spec, hd)
	checkJailedRequests(t, h, spec, version)

	if m, err := h.d.Metrics(t.Context(), hd); err != nil || m["block"] == nil {
		t.Errorf("got metrics %v, %v, want a sample written in the jail", m, err)
	}
	if target, err := os.Readlink(spec.AgentSocket); err != nil || target != filepath.Join(j.Root(), vsockName) {
		t.Errorf("got agent socket link to %q, %v, want %s", target, err, filepath.Join(j.Root(), vsockName))
	}
	if reply := vsockHandshake(t, spec.AgentSocket); !strings.HasPrefix(reply, "OK ") {
		t.Errorf("got %q through the agent socket, want OK <port> from the jailed vsock", reply)
	}
	console, _ := os.ReadFile(spec.ConsoleLog)
	for _, want := range []string{"Running Firecracker v" + version, "Linux version"} {
		if !bytes.Contains(console, []byte(want)) {
			t.Errorf("got console %q, want %q (the jailer hands Firecracker its stdout)", console, want)
		}
	}

	// Daemon restart: a new driver finds the machine from its state.
	d2 := h.newDriver()
	if rh, ok := d2.Recover(spec.Dir); !ok || rh != hd {
		t.Errorf("after restart: got %+v, %v, want %+v", rh, ok, hd)
	}
	if err := d2.Stop(t.Context(), hd, 5*time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if vmm.Alive(hd) {
		t.Fatal("got firecracker alive after stop, want it gone")
	}
	recs, _ := fctest.ReadRecord(h.record)
	if len(recs) == 0 || !strings.Contains(string(recs[len(recs)-1].Body), ActionSendCtrlAltDel) {
		t.Errorf("got last request %v, want SendCtrlAltDel", recs[len(recs)-1:])
	}

	// Delete: the jail goes, with the disk mounted in it; the disks stay.
	if err := d2.RemoveJail(spec.ID); err != nil {
		t.Fatalf("remove jail: %v", err)
	}
	checkJailGone(t, j)
	checkDisksIntact(t, spec, "")
	checkNoProcess(t, spec)
}

// checkJailedProcess: Firecracker runs as the jail's user, with the
// jail as its root, started by the jailer with the driver's arguments.
func checkJailedProcess(t *testing.T, hd vmm.Handle, j Jail, version string) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", hd.PID))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Uid", "Gid"} {
		want := fmt.Sprintf("%s:\t%d\t%d\t%d\t%d", f, jailUID, jailUID, jailUID, jailUID)
		if !bytes.Contains(status, []byte(want+"\n")) {
			t.Errorf("got /proc/%d/status without %q, want firecracker to run as %d:%d", hd.PID, want, jailUID, jailGID)
		}
	}
	root, err := os.Stat(j.Root())
	if err != nil || !rootIs(hd.PID, root) {
		t.Errorf("got firecracker's root elsewhere (%v), want the jail %s", err, j.Root())
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", hd.PID))
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if args[0] != "/"+j.ExecName || !slices.Contains(args, "--id") || !slices.Contains(args, j.ID) ||
		!slices.Contains(args, "--api-sock") || !slices.Contains(args, "/"+apiSockName) {
		t.Errorf("got firecracker command line %q, want /%s --id %s ... --api-sock /%s", args, j.ExecName, j.ID, apiSockName)
	}
	pid, err := os.ReadFile(j.PIDFile())
	switch {
	case !mustParse(t, version).Less(versionJailerPIDFile):
		if err != nil || string(pid) != strconv.Itoa(hd.PID) {
			t.Errorf("got pid file %q, %v, want %d", pid, err, hd.PID)
		}
	case err == nil:
		t.Errorf("got a pid file from jailer %s, want none before 1.7", version)
	}
}

func mustParse(t *testing.T, v string) Version {
	t.Helper()
	ver, err := ParseVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	return ver
}

// checkJailContents: exactly what the driver and the jailer put in the
// jail, with the owners Firecracker needs.
func checkJailContents(t *testing.T, h *jailedHost, spec vmm.Spec, hd vmm.Handle) {
	t.Helper()
	j := h.jail(spec)
	names := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	if got, want := names(j.Dir()), []string{jailMarker, "root"}; !slices.Equal(got, want) {
		t.Errorf("got %s holding %q, want %q", j.Dir(), got, want)
	}
	want := []string{"dev", "drive-seed", "drive-system", "drive-work", metricsName, logName, apiSockName, j.ExecName, "initrd", "run", "vmlinux", vsockName}
	if _, err := os.Stat(j.PIDFile()); err == nil {
		want = append(want, filepath.Base(j.PIDFile()))
	}
	slices.Sort(want)
	if got := names(j.Root()); !slices.Equal(got, want) {
		t.Errorf("got jail root %q, want %q", got, want)
	}

	type node struct {
		path     string
		kind     uint32 // unix.S_IF*
		perm     uint32 // 0: not checked
		uid      uint32
		rdev     uint64 // device numbers, for devices
		sameFile string // the host file it must be (a hard link or a bind mount)
	}
	nodes := []node{
		{path: ".", kind: unix.S_IFDIR, perm: 0o700, uid: jailUID},
		{path: "dev", kind: unix.S_IFDIR, perm: 0o700, uid: jailUID},
		{path: "dev/net", kind: unix.S_IFDIR, perm: 0o700, uid: jailUID},
		{path: "run", kind: unix.S_IFDIR, perm: 0o700, uid: jailUID},
		{path: "dev/kvm", kind: unix.S_IFCHR, perm: 0o600, uid: jailUID, rdev: unix.Mkdev(10, 232)},
		{path: "dev/net/tun", kind: unix.S_IFCHR, perm: 0o600, uid: jailUID, rdev: unix.Mkdev(10, 200)},
		{path: "dev/urandom", kind: unix.S_IFCHR, perm: 0o600, uid: jailUID, rdev: unix.Mkdev(1, 9)},
		{path: j.ExecName, kind: unix.S_IFREG, perm: 0o755, uid: 0},
		{path: "vmlinux", kind: unix.S_IFREG, uid: 0, sameFile: spec.Kernel},
		{path: "initrd", kind: unix.S_IFREG, perm: 0o644, uid: 0},
		{path: "drive-system", kind: unix.S_IFREG, uid: jailUID, sameFile: spec.Disks[0].Path},
		{path: "drive-work", kind: unix.S_IFREG, uid: jailUID, sameFile: spec.Disks[1].Path},
		{path: "drive-seed", kind: unix.S_IFREG, perm: 0o644, uid: 0, sameFile: spec.Disks[2].Path},
		{path: logName, kind: unix.S_IFREG, perm: 0o600, uid: jailUID},
		{path: metricsName, kind: unix.S_IFREG, perm: 0o600, uid: jailUID},
		{path: apiSockName, kind: unix.S_IFSOCK, uid: jailUID},
		{path: vsockName, kind: unix.S_IFSOCK, uid: jailUID},
	}
	for _, n := range nodes {
		p := filepath.Join(j.Root(), n.path)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", n.path, err)
			continue
		}
		if st.Mode&unix.S_IFMT != n.kind || (n.perm != 0 && st.Mode&0o777 != n.perm) || st.Uid != n.uid ||
			(n.uid == jailUID && st.Gid != jailGID) || (n.rdev != 0 && st.Rdev != n.rdev) {
			t.Errorf("%s: got mode %o, owner %d:%d, rdev %d; want type %o, perm %o, owner %d, rdev %d",
				n.path, st.Mode, st.Uid, st.Gid, st.Rdev, n.kind, n.perm, n.uid, n.rdev)
		}
		if n.sameFile != "" {
			a, errA := os.Stat(p)
			b, errB := os.Stat(n.sameFile)
			if errA != nil || errB != nil || !os.SameFile(a, b) {
				t.Errorf("%s: got another file than %s (%v, %v), want a link or mount of it", n.path, n.sameFile, errA, errB)
			}
		}
	}
	if copied, _ := os.ReadFile(filepath.Join(j.Root(), j.ExecName)); !bytes.Equal(copied, mustRead(t, h.release)) {
		t.Errorf("got a %d-byte %s in the jail, want the jailer's copy of %s", len(copied), j.ExecName, h.release)
	}
	if data, _ := os.ReadFile(filepath.Join(j.Root(), "initrd")); string(data) != "initrd" {
		t.Errorf("got initrd %q in the jail, want a copy of the image's", data)
	}
	info, _ := os.ReadFile("/proc/self/mountinfo")
	mounts := mountsUnder(string(info), j.Dir())
	wantMounts := []string(nil)
	if h.shmDir != "" {
		wantMounts = []string{filepath.Join(j.Root(), "drive-work")}
	}
	if !slices.Equal(mounts, wantMounts) {
		t.Errorf("got mounts %q in the jail, want %q (the disk from another filesystem)", mounts, wantMounts)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkJailedRequests: the fake accepted every request, and they name
// the files as Firecracker sees them in the jail.
func checkJailedRequests(t *testing.T, h *jailedHost, spec vmm.Spec, version string) {
	t.Helper()
	recs, err := fctest.ReadRecord(h.record)
	if err != nil {
		t.Fatal(err)
	}
	jailed := Layout{Kernel: "/" + jailKernel, Initrd: "/" + jailInitrd, Vsock: "/" + vsockName, Log: "/" + logName,
		Metrics: "/" + metricsName, Drives: []string{"/drive-system", "/drive-work", "/drive-seed"}}
	want, err := ConfigRequests(spec, jailed, mustParse(t, version))
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, StartRequest())
	var puts []fctest.Recorded
	for _, r := range recs {
		if r.Status/100 != 2 {
			t.Errorf("%s %s: got status %d (%s), want success", r.Method, r.Path, r.Status, r.Error)
		}
		if r.Method == "PUT" {
			puts = append(puts, r)
		}
	}
	if len(puts) != len(want) {
		t.Fatalf("got %d PUTs, want %d", len(puts), len(want))
	}
	for i, w := range want {
		body, _ := json.Marshal(w.Body)
		var got bytes.Buffer
		json.Compact(&got, puts[i].Body)
		if puts[i].Path != w.Path || got.String() != string(body) {
			t.Errorf("PUT %d: got %s %s, want %s %s", i, puts[i].Path, got.String(), w.Path, body)
		}
	}
}

func vsockHandshake(t *testing.T, socket string) string {
	t.Helper()
	conn, err := DialUnix(t.Context(), socket)
	if err != nil {
		t.Fatalf("dial %s: %v", socket, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "CONNECT 52\n")
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	return string(buf[:n])
}

// checkJailGone: nothing of the jail is left, mounted or on disk.
func checkJailGone(t *testing.T, j Jail) {
	t.Helper()
	if _, err := os.Lstat(j.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want the jail %s gone", err, j.Dir())
	}
	info, _ := os.ReadFile("/proc/self/mountinfo")
	if m := mountsUnder(string(info), j.Dir()); len(m) > 0 {
		t.Errorf("got %q still mounted, want nothing under the jail", m)
		for _, p := range m {
			unix.Unmount(p, unix.MNT_DETACH)
		}
	}
}

// checkDisksIntact: every disk image (but skip) is where it was with its
// contents.
func checkDisksIntact(t *testing.T, spec vmm.Spec, skip string) {
	t.Helper()
	for _, d := range spec.Disks {
		if d.Path == skip {
			continue
		}
		if data, err := os.ReadFile(d.Path); err != nil || string(data) != d.ID+" data" {
			t.Errorf("disk %s: got %q, %v, want it intact", d.ID, data, err)
		}
	}
}

// checkNoProcess: no jailer or Firecracker of the machine runs.
func checkNoProcess(t *testing.T, spec vmm.Spec) {
	t.Helper()
	if pids := processesNaming(spec.ID); len(pids) > 0 {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Errorf("got pids %v of vm %s left running, want none", pids, spec.ID)
	}
}

// testJailedFailedStarts: a start that fails at any step leaves no jail,
// mount, agent socket link, state or process, and the disks intact.
func testJailedFailedStarts(t *testing.T, release, version string) {
	tests := []struct {
		name    string
		env     map[string]string
		edit    func(*vmm.Spec) string // returns a disk path it removed
		wantErr string
		from17  bool // only where the jailer writes a pid file
		slow    bool // fails when the wait times out
	}{
		{name: "instance start refused", env: map[string]string{fctest.EnvFailPath: "/actions"},
			wantErr: "PUT /actions: 400: injected failure on /actions"},
		{name: "drive refused", env: map[string]string{fctest.EnvFailPath: "/drives/work"},
			wantErr: "PUT /drives/work: 400"},
		{name: "missing disk", edit: func(s *vmm.Spec) string { os.Remove(s.Disks[1].Path); return s.Disks[1].Path },
			wantErr: `disk 1 (work)`},
		// The last disk fails once the others are linked and mounted.
		{name: "disk neither file nor device", edit: func(s *vmm.Spec) string {
			os.Remove(s.Disks[2].Path)
			unix.Mkfifo(s.Disks[2].Path, 0o644)
			return s.Disks[2].Path
		}, wantErr: `prepare jail: disk "seed"`},
		{name: "missing kernel", edit: func(s *vmm.Spec) string { s.Kernel = "/nonexistent/vmlinux"; return "" },
			wantErr: "no such file"},
		// The jailer fails before Firecracker runs; the console has why.
		{name: "jailer fails", env: map[string]string{fctest.EnvSpec: "/nonexistent/swagger.yaml"},
			wantErr: "fake jailer: open api spec"},
		// Firecracker runs, but its pid never shows: it must not be left.
		{name: "no pid file", env: map[string]string{fctest.EnvJailerNoPIDFile: "1"}, from17: true, slow: true,
			wantErr: "wait for firecracker pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.from17 && mustParse(t, version).Less(versionJailerPIDFile) {
				t.Skipf("jailer %s writes no pid file", version)
			}
			h := newJailedHost(t, release, version, tt.env)
			spec := h.newSpec(t)
			skip := ""
			if tt.edit != nil {
				skip = tt.edit(&spec)
			}
			begin := time.Now()
			hd, err := h.d.Start(t.Context(), spec)
			if err == nil {
				vmm.Kill(context.Background(), hd)
				t.Fatalf("got a started vm, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want it to contain %q", err, tt.wantErr)
			}
			if took := time.Since(begin); !tt.slow && took > apiReadyTimeout/2 {
				t.Errorf("got the error after %v, want it as soon as the step fails", took)
			}
			checkJailGone(t, h.jail(spec))
			if _, err := os.Lstat(spec.AgentSocket); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("got agent socket link %v, want it removed", err)
			}
			if _, err := os.Stat(filepath.Join(spec.Dir, stateName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("got state %v, want none recorded", err)
			}
			if _, ok := h.d.Recover(spec.Dir); ok {
				t.Error("got a running machine after a failed start")
			}
			checkNoProcess(t, spec)
			checkDisksIntact(t, spec, skip)
		})
	}
}

// testJailedReap: reconcile removes the jails of machines the store does
// not know once nothing runs in them, keeps a running machine's jail
// (jailers before 1.7 write no pid file) and never touches a jail banger
// did not make.
func testJailedReap(t *testing.T, release, version string) {
	h := newJailedHost(t, release, version, nil)
	running := h.newSpec(t)
	h.start(t, running)
	crashed := h.newSpec(t)
	hc := h.start(t, crashed)
	if err := vmm.Kill(t.Context(), hc); err != nil {
		t.Fatal(err)
	}
	foreign := Jail{Base: h.opts.Jailer.ChrootBase, ExecName: h.execName, ID: "someone-else"}
	if err := os.MkdirAll(foreign.Root(), 0o755); err != nil {
		t.Fatal(err)
	}
	known := func(string) bool { return false } // the store knows neither

	removed, err := h.d.ReapJails(known)
	if err != nil || !slices.Equal(removed, []string{crashed.ID}) {
		t.Errorf("got %v, %v, want [%s] (the crashed machine's jail)", removed, err, crashed.ID)
	}
	checkJailGone(t, h.jail(crashed))
	if _, err := os.Stat(h.jail(running).Root()); err != nil {
		t.Errorf("got %v, want the running machine's jail kept", err)
	}

	hr, ok := h.d.Recover(running.Dir)
	if !ok {
		t.Fatal("got no running machine to stop")
	}
	if err := h.d.Stop(t.Context(), hr, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	removed, err = h.d.ReapJails(known)
	if err != nil || !slices.Equal(removed, []string{running.ID}) {
		t.Errorf("after stop: got %v, %v, want [%s]", removed, err, running.ID)
	}
	checkJailGone(t, h.jail(running))
	if _, err := os.Stat(foreign.Root()); err != nil {
		t.Errorf("got %v, want the jail without banger's marker left alone", err)
	}
	checkNoProcess(t, running)
	checkNoProcess(t, crashed)
}
