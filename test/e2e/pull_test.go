//go:build e2e

package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"banger/internal/model"
)

// pulledMarker is the file the second layer of the test image adds.
const pulledMarker = "pulled through an OCI registry\n"

// whitedOut is a file of the default image that the second layer of the
// test image deletes with a whiteout.
const whitedOut = "etc/issue.net"

// prunedDirs are left out of the test image to keep it small: the
// kernel's modules (an image from a registry has none for the borrowed
// kernel either), documentation and caches.
var prunedDirs = []string{"usr/lib/modules", "usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info", "var/cache", "var/lib/apt/lists"}

// TestImagePull pushes images built from the default image's root
// filesystem to a registry running in the test (inside the env's
// namespace), pulls them with banger and boots the good one to SSH; the
// bad ones each fail with one line and leave nothing behind.
func TestImagePull(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()
	host, transport := e.startRegistry()

	var def model.Image
	if err := json.Unmarshal([]byte(e.ok("image", "show", "--json", model.DefaultImageName).stdout), &def); err != nil {
		t.Fatalf("decode image: %v", err)
	}
	start := time.Now()
	tree := dumpRootfs(t, def.RootfsPath)
	if _, err := os.Lstat(filepath.Join(tree, whitedOut)); err != nil {
		t.Fatalf("the default image has no /%s to white out: %v", whitedOut, err)
	}
	if st, err := os.Lstat(filepath.Join(tree, crossLinked)); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("the default image has no regular /%s to hard-link to: %v", crossLinked, err)
	}
	base := treeLayer(t, tree)
	os.RemoveAll(tree)
	upper := entriesLayer(t, append([]tarEntry{
		{name: "etc/banger-pulled", body: pulledMarker, mode: 0o644},
		{name: filepath.Join(filepath.Dir(whitedOut), ".wh."+filepath.Base(whitedOut)), mode: 0o644},
	}, specialEntries()...))
	debian := imageOf(t, "amd64", base, upper)
	// The index's arm64 entry has no sshd: picking it would fail the pull.
	tiny := imageOf(t, "amd64", entriesLayer(t, []tarEntry{
		{name: "bin/", dir: true, mode: 0o755},
		{name: "bin/sh", body: "#!/bin/true\n", mode: 0o755},
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/os-release", body: "ID=tiny\n", mode: 0o644},
	}))
	tinyArm := imageOf(t, "arm64", entriesLayer(t, []tarEntry{{name: "etc/os-release", body: "ID=wrong\n", mode: 0o644}}))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: tinyArm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: debian, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	pushIndex(t, transport, host+"/debian:test", idx)
	pushImage(t, transport, host+"/tiny:1", tiny)
	t.Logf("dump, tar and push of the test image took %s", time.Since(start).Round(time.Second))

	start = time.Now()
	r := e.ok("image", "pull", "--insecure", host+"/debian:test", "--name", "pulled")
	t.Logf("image pull took %s\n%s", time.Since(start).Round(time.Second), r.stderr)
	for _, want := range []string{"resolve " + host + "/debian:test", "layer 1/2", "layer 2/2", "make the root filesystem", "kernel modules from image " + model.DefaultImageName + " on a read-only disk (made)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("pull progress lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "\r") {
		t.Errorf("pull progress holds terminal rewrites while stderr is not a terminal:\n%q", r.stderr)
	}
	pulled := e.managedImage("pulled")

	t.Run("bad inputs leave nothing", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
			want string
		}{
			{"bad reference", []string{"image", "pull", "Not A Ref!"}, "invalid image reference"},
			{"unreachable registry", []string{"image", "pull", "--insecure", "127.0.0.1:1/x/y:1", "--name", "nowhere"}, "registry 127.0.0.1:1 is unreachable"},
			{"missing image", []string{"image", "pull", "--insecure", host + "/nosuch:1"}, "not found"},
			{"unknown kernel image", []string{"image", "pull", "--insecure", host + "/debian:test", "--name", "nokernel", "--kernel-from", "nosuch"}, `image "nosuch" not found`},
			{"no sshd, no package manager", []string{"image", "pull", "--insecure", host + "/tiny:1"}, "and no package manager (apt-get, dnf, microdnf, yum) to install them with"},
			{"name taken", []string{"image", "pull", "--insecure", host + "/debian:test", "--name", "pulled"}, `image "pulled" already exists`},
			{"bad name", []string{"image", "pull", "--insecure", host + "/debian:test", "--name", "Bad_Name"}, "invalid name"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				// --quiet: progress lines would precede the error.
				r := e.fails(tc.want, append(tc.args, "--quiet")...)
				t.Logf("error: %s", strings.TrimSpace(r.stderr))
				e.assertImages(model.DefaultImageName, "pulled")
				if entries, _ := os.ReadDir(filepath.Join(e.home, "cache", "oci", "staging")); len(entries) != 0 {
					t.Errorf("staging dir holds %v, want nothing", entries)
				}
			})
		}
	})

	t.Run("boots to ssh", func(t *testing.T) {
		start := time.Now()
		e.ok("vm", "run", "-d", "--name", "p1", "--image", "pulled")
		t.Logf("vm run took %s", time.Since(start).Round(time.Second))
		r := e.ok("vm", "exec", "p1", "--", "cat", "/etc/os-release")
		if !strings.Contains(r.stdout, "Debian GNU/Linux") {
			t.Errorf("/etc/os-release: got %q, want Debian", r.stdout)
		}
		r = e.ok("vm", "exec", "p1", "--", "cat", "/etc/banger-pulled")
		if r.stdout != pulledMarker {
			t.Errorf("/etc/banger-pulled: got %q, want %q", r.stdout, pulledMarker)
		}
		r = e.banger("vm", "exec", "p1", "--", "test", "-e", "/"+whitedOut)
		if r.code != 1 {
			t.Errorf("test -e /%s: exit %d, want 1 (whited out by the second layer)\n%s", whitedOut, r.code, r)
		}
		// The image has no modules (pruned above): the kernel's come on
		// the modules disk, read-only, and load.
		r = e.ok("vm", "exec", "p1", "--", "sh", "-c", "findmnt -no OPTIONS /usr/lib/modules | cut -d, -f1; modprobe overlay && grep -c '^overlay ' /proc/modules")
		if got := strings.Fields(r.stdout); len(got) != 2 || got[0] != "ro" || got[1] != "1" {
			t.Errorf("modules: got %q, want /usr/lib/modules mounted ro and overlay loaded", r.stdout)
		}
		checkSpecials(t, e, "p1")
		r = e.ok("vm", "exec", "p1", "--", "sh", "-c", "stat -c %a /usr/bin/passwd; hostname")
		if got := strings.Fields(r.stdout); len(got) != 2 || got[0] != "4755" || got[1] != "p1" {
			t.Errorf("guest report %q: want passwd mode 4755 (setuid kept through the import) and hostname p1", r.stdout)
		}
		e.ok("vm", "delete", "p1")
		e.assertClean("after vm delete")
	})

	e.ok("image", "delete", "pulled")
	e.assertImages(model.DefaultImageName)
	if _, err := os.Stat(pulled.ArtifactDir); !os.IsNotExist(err) {
		t.Errorf("image dir %s left after image delete: %v", pulled.ArtifactDir, err)
	}
}

func (e *env) imagesDir() string { return filepath.Join(e.home, "state", "images") }

// managedImage returns the image name, checking that it is managed: its
// directory under the images dir, every artifact inside it.
func (e *env) managedImage(name string) model.Image {
	e.t.Helper()
	var img model.Image
	if err := json.Unmarshal([]byte(e.ok("image", "show", "--json", name).stdout), &img); err != nil {
		e.t.Fatalf("decode image %s: %v", name, err)
	}
	if !img.Managed || filepath.Dir(img.ArtifactDir) != e.imagesDir() {
		e.t.Errorf("image %s: managed %v dir %q, want a managed image under %s", name, img.Managed, img.ArtifactDir, e.imagesDir())
	}
	for _, p := range []string{img.RootfsPath, img.KernelPath, img.InitrdPath, img.WorkSeedPath} {
		if filepath.Dir(p) != img.ArtifactDir {
			e.t.Errorf("image %s: artifact %q is outside the image dir %s", name, p, img.ArtifactDir)
		}
	}
	return img
}

// assertImages fails unless the env's images are exactly names and the
// images dir holds one directory per managed one.
func (e *env) assertImages(names ...string) {
	e.t.Helper()
	var imgs []model.Image
	if err := json.Unmarshal([]byte(e.ok("image", "list", "--json").stdout), &imgs); err != nil {
		e.t.Fatalf("decode image list: %v", err)
	}
	var got []string
	managed := map[string]bool{}
	for _, img := range imgs {
		got = append(got, img.Name)
		if img.Managed {
			managed[filepath.Base(img.ArtifactDir)] = true
		}
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		e.t.Errorf("images %v, want %v", got, names)
	}
	entries, err := os.ReadDir(e.imagesDir())
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatalf("read images dir: %v", err)
	}
	for _, ent := range entries {
		if !managed[ent.Name()] {
			e.t.Errorf("images dir holds %s, which no image owns", ent.Name())
		}
	}
}

// startRegistry runs an in-memory OCI registry on 127.0.0.1 inside the
// env's namespace, where the daemon reaches it, and returns its
// host:port and a transport that dials into the namespace.
func (e *env) startRegistry() (string, http.RoundTripper) {
	e.t.Helper()
	var ln net.Listener
	if err := inNetns(e.netns, func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		e.t.Fatalf("listen in %s: %v", e.netns, err)
	}
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	e.t.Cleanup(srv.Close)
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetns(e.netns, func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	return ln.Addr().String(), transport
}

// dumpRootfs copies the content of an ext4 image into a directory
// without mounting it: debugfs rdump, then the modes rdump loses
// (setuid and setgid bits) and the device nodes and fifos it skips are
// restored from debugfs listings. prunedDirs are removed.
func dumpRootfs(t *testing.T, img string) string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("debugfs", "-R", "rdump / "+tree, img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v: %s", err, out)
	}
	var dirs []string
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			rel, _ := filepath.Rel(tree, p)
			dirs = append(dirs, "/"+strings.TrimPrefix(rel, "."))
		}
		return nil
	})
	var specials []string
	modes := map[string]uint32{}
	for path, mode := range debugfsModes(t, img, dirs) {
		modes[path] = mode
		switch mode & unix.S_IFMT {
		case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
			specials = append(specials, path)
		}
	}
	for path, mode := range modes {
		host := filepath.Join(tree, path)
		st, err := os.Lstat(host)
		if err != nil || st.Mode()&fs.ModeSymlink != 0 {
			continue
		}
		if perm := mode & 0o7777; st.Sys().(*syscall.Stat_t).Mode&0o7777 != perm {
			if err := unix.Chmod(host, perm); err != nil {
				t.Fatalf("chmod %s: %v", host, err)
			}
		}
	}
	devs := debugfsDevices(t, img, specials)
	for _, path := range specials {
		host := filepath.Join(tree, path)
		os.Remove(host)
		mode := modes[path]
		if err := unix.Mknod(host, mode, int(unix.Mkdev(devs[path][0], devs[path][1]))); err != nil {
			t.Fatalf("mknod %s: %v", host, err)
		}
		if err := unix.Chmod(host, mode&0o7777); err != nil {
			t.Fatalf("chmod %s: %v", host, err)
		}
	}
	for _, d := range prunedDirs {
		if err := os.RemoveAll(filepath.Join(tree, d)); err != nil {
			t.Fatalf("prune %s: %v", d, err)
		}
	}
	return tree
}

// debugfsModes lists dirs in img with debugfs ls -p and returns each
// entry's mode (type and permission bits) by its image path.
func debugfsModes(t *testing.T, img string, dirs []string) map[string]uint32 {
	t.Helper()
	var script strings.Builder
	for _, d := range dirs {
		fmt.Fprintf(&script, "ls -p %q\n", d)
	}
	out := debugfsScript(t, img, script.String())
	modes := map[string]uint32{}
	dir := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "debugfs: ls -p "); ok {
			if d, err := strconv.Unquote(rest); err == nil {
				dir = d
			}
			continue
		}
		// /inode/mode/uid/gid/name/size/
		f := strings.Split(line, "/")
		if len(f) < 8 || f[5] == "." || f[5] == ".." {
			continue
		}
		mode, err := strconv.ParseUint(f[2], 8, 32)
		if err != nil {
			continue
		}
		modes[filepath.Join(dir, f[5])] = uint32(mode)
	}
	return modes
}

// debugfsDevices returns the major and minor numbers of device nodes.
func debugfsDevices(t *testing.T, img string, paths []string) map[string][2]uint32 {
	t.Helper()
	var script strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&script, "stat %q\n", p)
	}
	devs := map[string][2]uint32{}
	cur := ""
	for _, line := range strings.Split(string(debugfsScript(t, img, script.String())), "\n") {
		if rest, ok := strings.CutPrefix(line, "debugfs: stat "); ok {
			cur, _ = strconv.Unquote(rest)
			continue
		}
		var major, minor uint32
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "Device major/minor number: %d:%d", &major, &minor); err == nil && cur != "" {
			devs[cur] = [2]uint32{major, minor}
		}
	}
	return devs
}

func debugfsScript(t *testing.T, img, script string) []byte {
	t.Helper()
	f := filepath.Join(t.TempDir(), "debugfs.cmds")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("debugfs", "-f", f, img).Output()
	if err != nil {
		t.Fatalf("debugfs -f: %v", err)
	}
	return out
}

// treeLayer makes a layer of tree with tar (numeric owners; modes,
// symlinks and device nodes as they are).
func treeLayer(t *testing.T, tree string) v1.Layer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "layer.tar")
	if out, err := exec.Command("tar", "-C", tree, "--numeric-owner", "-cf", path, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	l, err := tarball.LayerFromFile(path, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	return l
}

// tarEntry is one entry of a layer written by the test: a regular file
// unless dir or typ says otherwise.
type tarEntry struct {
	name string
	body string
	mode int64
	dir  bool
	// typ is the entry's tar type (a link, device node or fifo); link is
	// a link's target, major and minor a device node's numbers.
	typ          byte
	link         string
	uid, gid     int
	major, minor int64
}

func entriesLayer(t *testing.T, entries []tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, en := range entries {
		hdr := &tar.Header{
			Name: en.name, Mode: en.mode, Size: int64(len(en.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0),
			Linkname: en.link, Uid: en.uid, Gid: en.gid, Devmajor: en.major, Devminor: en.minor,
		}
		if en.dir {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}
		if en.typ != 0 {
			hdr.Typeflag, hdr.Size = en.typ, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, en.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// imageOf makes a linux image for arch from layers.
func imageOf(t *testing.T, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func pushImage(t *testing.T, transport http.RoundTripper, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithTransport(transport)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func pushIndex(t *testing.T, transport http.RoundTripper, ref string, idx v1.ImageIndex) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, remote.WithTransport(transport)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}
