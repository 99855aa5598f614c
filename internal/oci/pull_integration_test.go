//go:build integration

package oci

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
	"banger/internal/image"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown, mknod, security xattrs): run go test -tags integration as root")
	}
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: apt-get install e2fsprogs", tool)
		}
	}
}

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// testAgent builds banger-agent once per test binary.
func testAgent(t testing.TB) string {
	t.Helper()
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "banger-oci-agent-")
		if err != nil {
			agentErr = err
			return
		}
		agentPath = filepath.Join(dir, image.AgentName)
		cmd := exec.Command("go", "build", "-o", agentPath, "banger/cmd/banger-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = errors.New(string(out))
		}
	})
	if agentErr != nil {
		t.Fatalf("build banger-agent: %v", agentErr)
	}
	return agentPath
}

// capNetBindService is a security.capability value (VFS_CAP_REVISION_2,
// effective) granting cap_net_bind_service.
func capNetBindService() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000001)
	binary.LittleEndian.PutUint32(b[4:], 1<<10)
	return string(b)
}

// debugfs runs one read-only debugfs request on img.
func debugfs(t testing.TB, img, request string) string {
	t.Helper()
	out, err := hostexec.Run(context.Background(), "debugfs", "-R", request, img)
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", request, err)
	}
	return string(out)
}

// debugfsErr returns what debugfs says on stderr (a missing file).
func debugfsErr(t testing.TB, img, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", request, err)
	}
	return string(out)
}

func TestPullIntegration(t *testing.T) {
	requireRoot(t)
	host := startRegistry(t)
	lower := []tentry{
		dir("etc/"), file("etc/os-release", "ID=test\n"), file("etc/hostname", "builder\n"),
		dir("etc/ssh/"), file("etc/ssh/ssh_host_ed25519_key", "secret"),
		dir("usr/"), dir("usr/bin/"), dir("usr/sbin/"), symlink("bin", "usr/bin"),
		file("usr/bin/tool", "tool"), file("usr/bin/apt-get", "apt"),
		dir("data/"), file("data/keep", "keep"), file("data/drop", "drop"),
		dir("opaque/"), file("opaque/old", "old"),
		dir("dev/"),
		{name: "usr/bin/passwd", body: "suid", mode: 0o4755},
	}
	upper := []tentry{
		file("data/.wh.drop", ""),
		dir("opaque/"), file("opaque/.wh..wh..opq", ""), file("opaque/new", "new"),
		hardlink("usr/bin/tool-link", "usr/bin/tool"),
		symlink("usr/bin/sh", "tool"),
		{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3, mode: 0o666},
		{name: "dev/fifo", typ: tar.TypeFifo, mode: 0o600},
		{name: "usr/bin/ping", body: "ping", mode: 0o755, xattrs: map[string]string{"security.capability": capNetBindService()}},
		{name: "data/tagged", body: "x", uid: 1000, gid: 100, xattrs: map[string]string{"user.banger": "yes"}},
		file("bin/via-symlink", "lands in usr/bin"),
	}
	cfg := v1.Config{Cmd: []string{"/usr/bin/tool"}, Env: []string{"A=b"}}
	ref := pushImage(t, host, "test/multi:1", cfg, gzipBytes(t, tarBytes(t, lower)), gzipBytes(t, tarBytes(t, upper)))

	cache := t.TempDir()
	out := filepath.Join(t.TempDir(), "rootfs.ext4")
	res, err := Pull(t.Context(), PullOptions{
		Options:   Options{Ref: ref, CacheDir: cache, Insecure: true},
		Output:    out,
		AgentPath: testAgent(t),
	})
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if res.RootfsSize != gib {
		t.Errorf("rootfs size = %d, want the 1 GiB floor", res.RootfsSize)
	}
	if st, err := os.Stat(out); err != nil || st.Size() != res.RootfsSize {
		t.Errorf("rootfs file: %v, %v", st, err)
	}
	if res.Guest.HasSystemd || res.Guest.HasSSHD {
		t.Errorf("HasSystemd %v HasSSHD %v, want false for an image with neither", res.Guest.HasSystemd, res.Guest.HasSSHD)
	}
	// /bin/sh through the bin -> usr/bin symlink; apt-get in usr/bin.
	if !res.Guest.HasShell || res.Guest.PackageManager != "apt-get" {
		t.Errorf("HasShell %v PackageManager %q, want true and apt-get", res.Guest.HasShell, res.Guest.PackageManager)
	}
	// No lib -> usr/lib symlink in this image: the modules disk mounts
	// at /lib/modules.
	if fstab := debugfs(t, out, "cat /etc/fstab"); !strings.Contains(fstab, "\nLABEL="+image.ModulesLabel+" /lib/modules ext4 ro,nofail,") {
		t.Errorf("/etc/fstab lacks the modules disk at /lib/modules:\n%s", fstab)
	}
	masked, err := image.MaskedUnits()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Config.Cmd) != 1 || res.Config.Cmd[0] != "/usr/bin/tool" {
		t.Errorf("config cmd = %q", res.Config.Cmd)
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "oci/staging")); len(entries) != 0 {
		t.Errorf("staging dir left behind: %v", entries)
	}

	stats := []struct {
		path string
		want []string // regexps on debugfs stat
	}{
		{"/usr/bin/passwd", []string{`Type: regular\s+Mode:\s+04755`, `User:\s+0\s+Group:\s+0`}},
		{"/usr/bin/tool", []string{`Links: 2`}},
		{"/usr/bin/tool-link", []string{`Links: 2`}},
		{"/usr/bin/sh", []string{`Type: symlink`, `Fast link dest: "tool"`}},
		{"/bin", []string{`Type: symlink`, `Fast link dest: "usr/bin"`}},
		{"/usr/bin/via-symlink", []string{`Type: regular`}},
		{"/dev/null", []string{`Type: character special\s+Mode:\s+0666`, `Device major/minor number: 01:03`}},
		{"/dev/fifo", []string{`Type: FIFO`}},
		{"/data/tagged", []string{`User:\s+1000\s+Group:\s+100`}},
		{"/data/keep", []string{`Type: regular`}},
		{"/opaque/new", []string{`Type: regular`}},
		{image.AgentImagePath, []string{`Type: regular\s+Mode:\s+0755`, `User:\s+0\s+Group:\s+0`}},
		{"/etc/systemd/system/multi-user.target.wants/banger-agent.service", []string{`Type: symlink`}},
		{"/etc/systemd/system/banger-net.service", []string{`Type: regular\s+Mode:\s+0644`}},
		{"/etc/fstab", []string{`Type: regular`}},
		{"/root", []string{`Type: directory\s+Mode:\s+0700`}},
		// Without systemd and sshd the image boots through the first-boot
		// init, and gets the masks and drop-ins of units still to come.
		{image.FirstBootInit, []string{`Type: regular\s+Mode:\s+0755`}},
		{"/etc/systemd/system/" + masked[0], []string{`Type: symlink`, `Fast link dest: "/dev/null"`}},
		{"/etc/systemd/system/sshd.service.d/banger.conf", []string{`Type: regular\s+Mode:\s+0644`}},
	}
	for _, s := range stats {
		t.Run("stat "+s.path, func(t *testing.T) {
			got := debugfs(t, out, "stat "+s.path)
			for _, re := range s.want {
				if !regexp.MustCompile(re).MatchString(got) {
					t.Errorf("debugfs stat %s: want %q in:\n%s", s.path, re, got)
				}
			}
		})
	}
	for _, gone := range []string{"/data/drop", "/opaque/old", "/etc/hostname", "/etc/ssh/ssh_host_ed25519_key", "/data/.wh.drop", "/opaque/.wh..wh..opq"} {
		t.Run("gone "+gone, func(t *testing.T) {
			if got := debugfsErr(t, out, "stat "+gone); !strings.Contains(got, "File not found") {
				t.Errorf("%s is in the image:\n%s", gone, got)
			}
		})
	}
	t.Run("xattrs", func(t *testing.T) {
		if got := debugfs(t, out, "ea_list /data/tagged"); !strings.Contains(got, "user.banger") || !strings.Contains(got, "yes") {
			t.Errorf("ea_list /data/tagged:\n%s", got)
		}
		if got := debugfs(t, out, "ea_list /usr/bin/ping"); !strings.Contains(got, "security.capability") {
			t.Errorf("ea_list /usr/bin/ping:\n%s", got)
		}
	})
	t.Run("fstab content", func(t *testing.T) {
		if got := debugfs(t, out, "cat /etc/fstab"); !strings.Contains(got, "LABEL=banger-root") {
			t.Errorf("/etc/fstab:\n%s", got)
		}
	})
	t.Run("label", func(t *testing.T) {
		got, err := hostexec.Run(t.Context(), "dumpe2fs", "-h", out)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`Filesystem volume name:\s+banger-root`).Match(got) {
			t.Errorf("label is not banger-root")
		}
	})
	t.Run("fsck", func(t *testing.T) {
		if _, err := hostexec.Run(t.Context(), "e2fsck", "-fn", out); err != nil {
			t.Errorf("e2fsck -fn: %v", err)
		}
	})
}

func TestPullHostileLeavesNothing(t *testing.T) {
	requireRoot(t)
	host := startRegistry(t)
	agent := testAgent(t)
	big := strings.Repeat("x", 4096)
	// noise is incompressible content: a gzip cut in half ends inside it.
	noise := make([]byte, 64<<10)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	good := gzipBytes(t, tarBytes(t, []tentry{dir("etc/"), file("etc/os-release", "ID=test\n")}))
	noisy := gzipBytes(t, tarBytes(t, []tentry{file("noise", string(noise)), file("after", "x")}))
	garbage := []byte(strings.Repeat("this is not a tar archive\n", 64))
	// up, made by a lower layer, leads from the staging tree
	// (CACHE/oci/staging/pull-*/rootfs) to CACHE itself, which holds a
	// victim file: the upper layers try to write, delete and link there.
	up := []tentry{dir("etc/"), symlink("up", "../../../..")}
	tests := []struct {
		name   string
		layers [][]tentry
		raw    [][]byte // pushed as they are, after layers
		limits Limits
		want   error
	}{
		{name: "dot dot", layers: [][]tentry{{file("ok", "1"), file("../../evil", "x")}}, want: ErrPathEscape},
		{name: "absolute", layers: [][]tentry{{file("/etc/evil", "x")}}, want: ErrPathEscape},
		{name: "symlink escape", layers: [][]tentry{{symlink("up", "../../../../.."), file("up/tmp/evil", "x")}}, want: ErrSymlinkEscape},
		{name: "hard link escape", layers: [][]tentry{{hardlink("shadow", "../../../etc/shadow")}}, want: ErrHardlinkEscape},
		{name: "bad name", layers: [][]tentry{{file("line\nbreak", "x")}}, want: ErrBadName},
		{name: "oversize", layers: [][]tentry{{file("a", big), file("b", big)}}, limits: Limits{MaxBytes: 6000}, want: ErrTooLarge},
		{name: "write through a symlink of an earlier layer", layers: [][]tentry{up, {file("up/evil", "x")}}, want: ErrSymlinkEscape},
		{name: "whiteout through a symlink of an earlier layer", layers: [][]tentry{up, {file("up/.wh.victim", "")}}, want: ErrSymlinkEscape},
		{name: "opaque dir through a symlink of an earlier layer", layers: [][]tentry{up, {file("up/.wh..wh..opq", "")}}, want: ErrSymlinkEscape},
		{name: "hard link through a symlink of an earlier layer", layers: [][]tentry{up, {hardlink("stolen", "up/victim")}}, want: ErrHardlinkEscape},
		{name: "garbage bytes", raw: [][]byte{garbage}, want: ErrMalformed},
		{name: "gzip of garbage", raw: [][]byte{gzipBytes(t, garbage)}, want: ErrMalformed},
		{name: "truncated gzip after a good layer", raw: [][]byte{good, noisy[:len(noisy)/2]}, want: ErrMalformed},
		{name: "corrupt gzip header", raw: [][]byte{append([]byte{0x1f, 0x8b, 0xff}, good[3:]...)}, want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var layers []v1.Layer
			for _, l := range tt.layers {
				layers = append(layers, rawLayer(gzipBytes(t, tarBytes(t, l))))
			}
			for _, blob := range tt.raw {
				layers = append(layers, rawLayer(blob))
			}
			// What the cache may hold afterwards: the victim, the
			// (empty) staging dir and the blobs of the image's layers.
			want := map[string]bool{"victim": true, "oci": true, "oci/staging": true, "oci/blobs": true, "oci/blobs/sha256": true}
			for _, l := range layers {
				d, err := l.Digest()
				if err != nil {
					t.Fatal(err)
				}
				want["oci/blobs/sha256/"+d.Hex] = true
			}
			ref := pushLayers(t, host, "hostile/"+strings.ReplaceAll(tt.name, " ", "-")+":1", v1.Config{}, layers...)
			cache := t.TempDir()
			victim := filepath.Join(cache, "victim")
			if err := os.WriteFile(victim, []byte("victim"), 0o644); err != nil {
				t.Fatal(err)
			}
			outDir := t.TempDir()
			out := filepath.Join(outDir, "rootfs.ext4")
			_, err := Pull(t.Context(), PullOptions{
				Options: Options{Ref: ref, CacheDir: cache, Insecure: true},
				Output:  out, AgentPath: agent, Limits: tt.limits,
			})
			if !errors.Is(err, tt.want) || !errdefs.IsInvalid(err) {
				t.Fatalf("Pull error = %v, want %v", err, tt.want)
			}
			t.Logf("error: %v", err)
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans several lines", err)
			}
			if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
				t.Errorf("output dir holds %v, want nothing", entries)
			}
			if entries, _ := os.ReadDir(filepath.Join(cache, "oci/staging")); len(entries) != 0 {
				t.Errorf("staging dir left behind: %v", entries)
			}
			// No partial download, no file written through a symlink.
			filepath.WalkDir(cache, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					t.Errorf("walk cache: %v", err)
					return nil
				}
				if rel, _ := filepath.Rel(cache, p); rel != "." && !want[rel] {
					t.Errorf("cache holds %s, want only the layer blobs and the victim", rel)
				}
				return nil
			})
			var st unix.Stat_t
			if err := unix.Lstat(victim, &st); err != nil || st.Nlink != 1 {
				t.Errorf("victim: %v, %d links, want it kept with 1 link", err, st.Nlink)
			}
			for _, p := range []string{"/evil", "/tmp/evil", "/etc/evil"} {
				if exists(p) {
					t.Errorf("%s was written on the host", p)
				}
			}
		})
	}
}

func TestPullSizeTooSmall(t *testing.T) {
	requireRoot(t)
	host := startRegistry(t)
	ref := pushImage(t, host, "test/small:1", v1.Config{}, gzipBytes(t, tarBytes(t, []tentry{file("a", strings.Repeat("x", 1<<20))})))
	out := filepath.Join(t.TempDir(), "rootfs.ext4")
	_, err := Pull(t.Context(), PullOptions{Options: Options{Ref: ref, CacheDir: t.TempDir(), Insecure: true}, Output: out, AgentPath: testAgent(t), Size: 4096})
	if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "smaller than the image content") {
		t.Fatalf("Pull error = %v, want a size smaller than the content", err)
	}
	if exists(out) {
		t.Errorf("%s left behind", out)
	}
}

func TestPullErrorsOneLine(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name, ref string
		kind      error
	}{
		{"bad reference", "not a ref!", errdefs.ErrInvalid},
		{"unreachable registry", "127.0.0.1:1/x/y:1", errdefs.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "rootfs.ext4")
			_, err := Pull(t.Context(), PullOptions{Options: Options{Ref: tt.ref, CacheDir: t.TempDir(), Insecure: true}, Output: out, AgentPath: testAgent(t)})
			if !errors.Is(err, tt.kind) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Pull error = %q, want one line of kind %v", err, tt.kind)
			}
			if exists(out) {
				t.Errorf("%s left behind", out)
			}
		})
	}
}
