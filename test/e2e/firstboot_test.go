//go:build e2e

package e2e

import (
	"compress/gzip"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"banger/internal/api"
	"banger/internal/model"
	"banger/internal/testutil/minbase"
)

// TestFirstBoot pulls an image without systemd and sshd (a Debian
// minbase root, as a container image has it) whose apt source is a
// mirror behind the host's uplink, made from the package cache and
// served inside the test's namespaces. Without NAT its VMs are refused
// before anything is made; with NAT the first boot installs systemd and
// sshd with apt and the VM answers SSH, under systemd; later starts need
// no NAT. A mirror the guest cannot reach fails the start with the
// installer's own line.
func TestFirstBoot(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()
	host, transport := e.startRegistry()
	e.uplink()
	repo := minbase.Repo(t)
	if repo == "" {
		t.Fatalf("the package cache %s has no .deb files; the default image build fills it", minbase.PackageCache())
	}
	mirror := e.serveDir(e.netns+"-up", "198.51.100.1:0", repo)

	start := time.Now()
	base := minbaseLayer(t, repo)
	t.Logf("minbase root made in %s", time.Since(start).Round(time.Second))
	sources := func(url string) []tarEntry {
		return []tarEntry{{name: "etc/apt/sources.list", body: "deb [trusted=yes] " + url + " ./\n", mode: 0o644}}
	}
	pushImage(t, transport, host+"/minbase:1", imageOf(t, "amd64", base, entriesLayer(t, sources("http://"+mirror))))
	// Port 1 of the uplink: nothing listens, the connection is refused.
	pushImage(t, transport, host+"/minbase:nomirror", imageOf(t, "amd64", base, entriesLayer(t, sources("http://198.51.100.1:1"))))

	r := e.ok("image", "pull", "--insecure", host+"/minbase:1", "--name", "minbase")
	if want := "each VM installs systemd and sshd with apt-get at its first boot, which needs NAT"; !strings.Contains(r.stderr, want) {
		t.Errorf("pull output lacks %q:\n%s", want, r.stderr)
	}

	var details api.ImageDetails
	if err := json.Unmarshal([]byte(e.ok("image", "show", "--json", "minbase").stdout), &details); err != nil {
		t.Fatalf("decode image show: %v", err)
	}
	if fb := details.FirstBoot; fb == nil || fb.PackageManager != "apt-get" || strings.Join(fb.Installs, ",") != "systemd,sshd" || details.ModulesDisk == "" {
		t.Errorf("image show: first boot %+v, modules disk %q; want apt-get installing systemd and sshd, and a modules disk", fb, details.ModulesDisk)
	}
	if r := e.ok("image", "show", "minbase"); !strings.Contains(r.stdout, "installs systemd and sshd with apt-get (needs --nat)") {
		t.Errorf("image show lacks the first boot line:\n%s", r.stdout)
	}

	t.Run("refused without nat", func(t *testing.T) {
		e.fails(`image "minbase" has no systemd and sshd: a VM of it installs systemd and sshd with apt-get at its first boot, which needs NAT`,
			"vm", "create", "--image", "minbase", "--name", "nonat")
		if vms := e.vms(); len(vms) != 0 {
			t.Errorf("vms after the refused create: %v, want none", vms)
		}
		e.assertClean("after a refused create")
	})

	t.Run("stop during the install", func(t *testing.T) {
		// vm stop ends a first boot at once (not after the SSH wait); the
		// next start installs again, over a dpkg left midway.
		e.ok("vm", "create", "--nat", "--no-start", "--image", "minbase", "--name", "fb1")
		started := make(chan result, 1)
		go func() { started <- e.banger("vm", "start", "fb1") }()
		console := e.vm("fb1").Runtime.LogPath
		for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
			if data, _ := os.ReadFile(console); strings.Contains(string(data), "Unpacking ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the install did not begin within 5 minutes; console:\n%s", tail(console, 2000))
			}
		}
		begin := time.Now()
		e.ok("vm", "stop", "fb1")
		if took := time.Since(begin); took > 30*time.Second {
			t.Errorf("vm stop during a first boot took %s, want it to end the boot at once", took)
		}
		r := <-started
		if r.code == 0 || !strings.Contains(r.stderr, "stopped by vm stop while booting") {
			t.Errorf("the interrupted start: got %s, want a failure saying it was stopped", r)
		}
		if vm := e.vm("fb1"); vm.State != model.VMStateStopped || vm.Runtime.LastError != "" {
			t.Errorf("after stop: state %s, last error %q; want stopped and none", vm.State, vm.Runtime.LastError)
		}
	})

	t.Run("installs at first boot", func(t *testing.T) {
		start := time.Now()
		r := e.ok("vm", "start", "fb1")
		t.Logf("first boot took %s\n%s", time.Since(start).Round(time.Second), r.stderr)
		for _, want := range []string{"fb1 installs systemd and sshd with apt-get at its first boot", "running: apt-get -q update", "installed systemd and sshd; starting systemd"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("vm run progress lacks %q", want)
			}
		}
		guestState := func() string {
			r := e.ok("vm", "exec", "fb1", "--", "sh", "-c", "cat /proc/1/comm; hostname; findmnt -no TARGET /dev/vdb; systemctl is-active ssh.service banger-agent.service")
			return strings.Join(strings.Fields(r.stdout), " ")
		}
		if got, want := guestState(), "systemd fb1 /root active active"; got != want {
			t.Errorf("guest: got %q, want %q (PID 1, hostname, work disk mount, sshd and agent)", got, want)
		}
		// kmod came with the install: the modules disk's modules load.
		if r := e.ok("vm", "exec", "fb1", "--", "sh", "-c", "modprobe overlay && grep -c '^overlay ' /proc/modules"); strings.TrimSpace(r.stdout) != "1" {
			t.Errorf("overlay module: got %q, want it loaded", r.stdout)
		}
		e.ok("vm", "exec", "fb1", "--", "sh", "-c", "echo kept >/root/work-file")

		// Installed for good: a start without NAT boots straight to systemd.
		e.ok("vm", "stop", "fb1")
		e.ok("vm", "set", "fb1", "--no-nat")
		r = e.ok("vm", "start", "fb1")
		if strings.Contains(r.stderr, "first boot") {
			t.Errorf("second start reports a first boot:\n%s", r.stderr)
		}
		if got, want := guestState(), "systemd fb1 /root active active"; got != want {
			t.Errorf("guest after restart: got %q, want %q", got, want)
		}
		if r := e.ok("vm", "exec", "fb1", "--", "cat", "/root/work-file"); r.stdout != "kept\n" {
			t.Errorf("work file after restart: got %q, want %q", r.stdout, "kept\n")
		}
		e.ok("vm", "delete", "fb1")
		e.assertClean("after vm delete")
	})

	t.Run("unreachable mirror", func(t *testing.T) {
		e.ok("image", "pull", "--insecure", "--quiet", host+"/minbase:nomirror", "--name", "nomirror")
		r := e.banger("vm", "run", "-d", "--nat", "--image", "nomirror", "--name", "fb2")
		if r.code == 0 {
			t.Fatalf("vm run with an unreachable mirror succeeded:\n%s", r)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		last := lines[len(lines)-1]
		for _, want := range []string{"first boot: apt-get update could not reach the image's package mirror", "198.51.100.1"} {
			if !strings.Contains(last, want) {
				t.Errorf("error line %q lacks %q", last, want)
			}
		}
		e.ok("vm", "delete", "fb2")
		e.assertClean("after deleting the failed vm")
	})
}

// minbaseLayer is a Debian minbase root with apt (no systemd, no sshd,
// as in Debian's container images) made from repo, as one layer.
func minbaseLayer(t *testing.T, repo string) v1.Layer {
	t.Helper()
	out := filepath.Join(t.TempDir(), "minbase.tar")
	minbase.Make(t, repo, out)
	l, err := tarball.LayerFromFile(out, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	return l
}

// serveDir serves dir over HTTP on addr in namespace ns until the test
// ends and returns the address it listens on.
func (e *env) serveDir(ns, addr, dir string) string {
	e.t.Helper()
	ln := e.listenIn(ns, addr)
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(ln)
	e.t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// tail is the last n bytes of the file at path.
func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}
