//go:build integration

package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"banger/internal/hostexec"
	"banger/internal/model"
	"banger/internal/storage"
)

// The build tests run mmdebstrap as root against the Debian mirror and
// take minutes. BANGER_SKIP_IMAGE_BUILD=1 skips them;
// BANGER_IMAGE_CACHE_DIR=/some/dir keeps downloaded packages between runs.
func requireImageBuild(t *testing.T) string {
	t.Helper()
	if os.Getenv("BANGER_SKIP_IMAGE_BUILD") == "1" {
		t.Skip("BANGER_SKIP_IMAGE_BUILD=1: skipping the debian-bookworm image build (a few minutes, root, Debian mirror)")
	}
	if os.Geteuid() != 0 {
		t.Skip("building an image needs root (mmdebstrap root mode): run the integration tests as root")
	}
	for _, tool := range []string{"mmdebstrap", "unshare", "mkfs.ext4", "debugfs", "e2fsck", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not in PATH: install mmdebstrap, util-linux, e2fsprogs and openssh-client to build images", tool)
		}
	}
	if dir := os.Getenv("BANGER_IMAGE_CACHE_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(t.TempDir(), "cache")
}

// testPackageCache is the package cache the build tests share with
// bangerd's default (BANGER_PACKAGE_CACHE_DIR overrides it), so a build
// here lets later builds in isolated namespaces run offline.
func testPackageCache() string {
	if dir := os.Getenv("BANGER_PACKAGE_CACHE_DIR"); dir != "" {
		return dir
	}
	return "/var/cache/banger/packages"
}

// buildTestAgent builds banger-agent, static, into a temp dir.
func buildTestAgent(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH to build banger-agent for the image")
	}
	out := filepath.Join(t.TempDir(), AgentName)
	cmd := exec.CommandContext(t.Context(), goTool, "build", "-o", out, "banger/cmd/banger-agent")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build banger-agent: %v\n%s", err, b)
	}
	return out
}

func TestBuildDebianBookworm(t *testing.T) {
	cache := requireImageBuild(t)
	agentPath := buildTestAgent(t)
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "id_ed25519")
	if _, err := hostexec.Run(t.Context(), "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "banger-test", "-f", keyPath); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(keyPath + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	art := filepath.Join(dir, "artifacts")
	var steps []string
	start := time.Now()
	res, err := Build(t.Context(), BuildOptions{
		Name:         "debian-bookworm",
		ArtifactDir:  art,
		CacheDir:     cache,
		PackageCache: testPackageCache(),
		SSHPublicKey: string(pub),
		AgentPath:    agentPath,
		Progress:     func(step, _ string) { steps = append(steps, step) },
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Logf("built in %s: %+v", time.Since(start).Round(time.Second), res)

	// "offline" shows up when the mirror is unreachable and the build
	// ran from the package cache.
	steps = slices.DeleteFunc(steps, func(s string) bool { return s == "offline" })
	if want := []string{"bootstrap", "configure", "kernel", "rootfs", "work-seed", "listing"}; !slices.Equal(steps, want) {
		t.Errorf("got steps %q, want %q", steps, want)
	}
	if !strings.HasPrefix(res.ListingSHA256, "sha256:") || len(res.ListingSHA256) != len("sha256:")+64 {
		t.Errorf("got ListingSHA256 %q, want sha256:<64 hex>", res.ListingSHA256)
	}
	for _, p := range []string{res.RootfsPath, res.WorkSeedPath, res.KernelPath, res.InitrdPath} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 || filepath.Dir(p) != art {
			t.Errorf("artifact %s: %v, want a non-empty file in %s", p, err, art)
		}
	}
	st, err := os.Stat(res.RootfsPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := model.FormatSizeBytes(st.Size()); res.BuildSize != got {
		t.Errorf("got BuildSize %q, want %q (rootfs size)", res.BuildSize, got)
	}
	out, err := hostexec.Run(t.Context(), "ssh-keygen", "-lf", keyPath+".pub")
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(out)); len(f) < 2 || f[1] != res.SeededSSHPublicKeyFingerprint {
		t.Errorf("got fingerprint %q, want ssh-keygen's %q", res.SeededSSHPublicKeyFingerprint, out)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "build-*")); len(left) > 0 {
		t.Errorf("got scratch dirs left in the cache: %q", left)
	}

	t.Run("initrd has the virtio-mmio stack", func(t *testing.T) {
		names := initrdFiles(t, res.InitrdPath)
		for _, m := range []string{"virtio_mmio", "virtio_blk", "virtio_net", "virtio_console", "ext4"} {
			if !slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, "/"+m+".ko") }) {
				t.Errorf("initrd lacks %s.ko", m)
			}
		}
		if !slices.Contains(names, "conf/modules") {
			t.Error("initrd lacks conf/modules (the forced module list)")
		}
	})

	t.Run("rootfs", func(t *testing.T) {
		img := res.RootfsPath
		if label := e2label(t, img); label != RootLabel {
			t.Errorf("got label %q, want %q", label, RootLabel)
		}
		if keys := grepNames(debugfsLs(t, img, "/etc/ssh"), "ssh_host_"); len(keys) > 0 {
			t.Errorf("got host keys in the image: %q", keys)
		}
		if got := debugfsLs(t, img, "/root"); !slices.Equal(got, []string{".", ".."}) {
			t.Errorf("got /root entries %q, want an empty mount point", got)
		}
		if got := debugfsLs(t, img, "/boot"); slices.ContainsFunc(got, func(n string) bool { return strings.HasPrefix(n, "vmlinuz-") }) {
			t.Errorf("got %q in /boot, want the kernel moved out to the artifacts", got)
		}
		if lists := grepNames(debugfsLs(t, img, "/var/lib/apt/lists"), "_Packages"); len(lists) > 0 {
			t.Errorf("got apt lists left: %q", lists)
		}
		if debs := grepNames(debugfsLs(t, img, "/var/cache/apt/archives"), ".deb"); len(debs) > 0 {
			t.Errorf("got %d cached .deb files left", len(debs))
		}
		if id, err := storage.ReadFile(t.Context(), img, "/etc/machine-id"); err != nil || len(id) != 0 {
			t.Errorf("got machine-id %q, %v, want an empty file", id, err)
		}
		for _, unit := range enabledUnits {
			if typ := debugfsType(t, img, "/etc/systemd/system/multi-user.target.wants/"+unit); typ != "symlink" {
				t.Errorf("%s: got %q in multi-user.target.wants, want a symlink (enabled)", unit, typ)
			}
		}
		for _, unit := range []string{"systemd-networkd.service", "apt-daily.timer", "e2scrub_reap.service"} {
			if typ := debugfsType(t, img, "/etc/systemd/system/"+unit); typ != "symlink" {
				t.Errorf("%s: got %q, want masked (symlink to /dev/null)", unit, typ)
			}
		}
		for _, f := range guestFiles {
			want, _ := guestFS.ReadFile("guest/" + f.Src)
			got, err := storage.ReadFile(t.Context(), img, f.Dst)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: got %d bytes, %v, want the embedded %s", f.Dst, len(got), err, f.Src)
			}
		}
		agent, _ := os.ReadFile(agentPath)
		if got, err := storage.ReadFile(t.Context(), img, AgentImagePath); err != nil || !bytes.Equal(got, agent) {
			t.Errorf("%s: got %d bytes, %v, want the %d-byte agent", AgentImagePath, len(got), err, len(agent))
		}
		if mode, owner := debugfsModeOwner(t, img, AgentImagePath); mode != "0755" || owner != "0:0" {
			t.Errorf("%s: got mode %s owner %s, want 0755 0:0", AgentImagePath, mode, owner)
		}
		if want, _ := AgentDigest(agentPath); res.AgentDigest != want {
			t.Errorf("got AgentDigest %q, want %q", res.AgentDigest, want)
		}
		fsckClean(t, img)
	})

	t.Run("work seed", func(t *testing.T) {
		img := res.WorkSeedPath
		if label := e2label(t, img); label != storage.WorkLabel {
			t.Errorf("got label %q, want %q", label, storage.WorkLabel)
		}
		got, err := storage.ReadFile(t.Context(), img, "/.ssh/authorized_keys")
		if err != nil || string(got) != strings.TrimSpace(string(pub))+"\n" {
			t.Errorf("got authorized_keys %q, %v, want the public key", got, err)
		}
		for p, want := range map[string]string{"/": "0700", "/.ssh": "0700", "/.ssh/authorized_keys": "0600"} {
			if mode, owner := debugfsModeOwner(t, img, p); mode != want || owner != "0:0" {
				t.Errorf("%s: got mode %s owner %s, want %s 0:0", p, mode, owner, want)
			}
		}
		if _, err := storage.ReadFile(t.Context(), img, "/.bashrc"); err != nil {
			t.Errorf("got %v reading /.bashrc, want the image's /root content in the seed", err)
		}
		fsckClean(t, img)
	})
	if !t.Failed() {
		publishTestImage(t, res, keyPath)
	}
}

func TestBuildCancelLeavesNothing(t *testing.T) {
	cache := requireImageBuild(t)
	agentPath := buildTestAgent(t)
	art := filepath.Join(t.TempDir(), "artifacts")
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	_, err := Build(ctx, BuildOptions{Name: "debian-bookworm", ArtifactDir: art, CacheDir: cache, SSHPublicKey: testKeyEd25519, AgentPath: agentPath})
	if err == nil {
		t.Fatal("got a finished build in 15 s, want it cancelled")
	}
	t.Logf("cancelled build: %v", err)
	if _, serr := os.Stat(art); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("got artifact dir after cancel (stat: %v), want it removed", serr)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "build-*")); len(left) > 0 {
		t.Errorf("got scratch dirs left: %q", left)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if mounts, _ := mountsUnder(bytes.NewReader(mountinfo), cache); len(mounts) > 0 {
		t.Errorf("got mounts left under the cache dir: %q", mounts)
	}
}

// initrdFiles lists the files of a (gzip-compressed or plain) newc cpio
// initrd, following concatenated archives.
func initrdFiles(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for len(data) > 0 {
		switch {
		case bytes.HasPrefix(data, []byte("070701")):
			var n []string
			n, data = cpioNames(t, data)
			names = append(names, n...)
			data = bytes.TrimLeft(data, "\x00")
		case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := cpioNames(t, plain)
			return append(names, n...)
		default:
			t.Fatalf("initrd %s: unsupported compression (magic % x); this test reads gzip and plain cpio", path, data[:min(4, len(data))])
		}
	}
	return names
}

// cpioNames reads one newc archive and returns its names and the rest.
func cpioNames(t *testing.T, data []byte) ([]string, []byte) {
	t.Helper()
	var names []string
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if off+110 > len(data) || string(data[off:off+6]) != "070701" {
			t.Fatalf("bad cpio header at %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(data[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		fileSize, nameSize := field(6), field(11)
		name := string(data[off+110 : off+110+nameSize-1])
		off = align(off + 110 + nameSize)
		off = align(off + fileSize)
		if name == "TRAILER!!!" {
			return names, data[min(off, len(data)):]
		}
		names = append(names, name)
	}
}

func e2label(t *testing.T, img string) string {
	t.Helper()
	out, err := hostexec.Run(t.Context(), "e2label", img)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func fsckClean(t *testing.T, img string) {
	t.Helper()
	if out, err := hostexec.Run(t.Context(), "e2fsck", "-f", "-n", img); err != nil {
		t.Errorf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// debugfsLs lists the names in a directory of an ext4 image.
func debugfsLs(t *testing.T, img, dir string) []string {
	t.Helper()
	out, err := hostexec.Run(t.Context(), "debugfs", "-R", "ls -p "+dir, img)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		// /inode/mode/uid/gid/name/size/
		if f := strings.Split(line, "/"); len(f) >= 7 {
			names = append(names, f[5])
		}
	}
	return names
}

func grepNames(names []string, sub string) []string {
	var out []string
	for _, n := range names {
		if strings.Contains(n, sub) {
			out = append(out, n)
		}
	}
	return out
}

// debugfsStat returns the fields of debugfs "stat" for path.
func debugfsStat(t *testing.T, img, p string) []string {
	t.Helper()
	out, err := hostexec.Run(t.Context(), "debugfs", "-R", "stat "+p, img)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}

func fieldAfter(fields []string, key string) string {
	if i := slices.Index(fields, key); i >= 0 && i+1 < len(fields) {
		return fields[i+1]
	}
	return ""
}

func debugfsType(t *testing.T, img, p string) string {
	return fieldAfter(debugfsStat(t, img, p), "Type:")
}

func debugfsModeOwner(t *testing.T, img, p string) (mode, owner string) {
	f := debugfsStat(t, img, p)
	return fieldAfter(f, "Mode:"), fieldAfter(f, "User:") + ":" + fieldAfter(f, "Group:")
}

// TestImageDir is where a successful build test leaves its artifacts and
// the matching private key for the QEMU driver's boot tests
// (BANGER_TEST_IMAGE_DIR overrides it).
func testImageDir() string {
	if dir := os.Getenv("BANGER_TEST_IMAGE_DIR"); dir != "" {
		return dir
	}
	return "/var/cache/banger-test/image"
}

// publishTestImage copies a built image and its key to testImageDir and
// marks it READY.
func publishTestImage(t *testing.T, res Result, keyPath string) {
	t.Helper()
	dir := testImageDir()
	os.Remove(filepath.Join(dir, "READY"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("publish test image: %v", err)
	}
	for _, src := range []string{res.RootfsPath, res.WorkSeedPath, res.KernelPath, res.InitrdPath, keyPath} {
		dst := filepath.Join(dir, filepath.Base(src))
		os.Remove(dst)
		if _, err := hostexec.Run(t.Context(), "cp", "--sparse=always", src, dst); err != nil {
			t.Fatalf("publish test image: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "READY"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		t.Fatalf("publish test image: %v", err)
	}
	t.Logf("published the image for the QEMU boot tests in %s", dir)
}
