//go:build e2e

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"banger/internal/api"
	"banger/internal/model"
)

// TestImagePromote changes a VM's root filesystem, promotes the stopped
// VM to an image and boots a second VM from it: the change is there,
// the identity (hostname, machine id, SSH host key) is the new VM's
// own. Promoting a running VM or to a taken name fails with one line
// and leaves nothing.
func TestImagePromote(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()

	t.Run("cache prune on a fresh env", func(t *testing.T) {
		for _, args := range [][]string{{"--dry-run"}, {}} {
			res := e.cachePrune(args...)
			for _, en := range res.Entries {
				// A build of the default image leaves its log; nothing else
				// is there to prune.
				if en.Kind != api.CacheBuildLog {
					t.Errorf("cache prune %v: lists %s %s, want nothing an image needs", args, en.Kind, en.Path)
				}
			}
		}
	})

	suffix := make([]byte, 6)
	rand.Read(suffix)
	marker := "promoted-" + hex.EncodeToString(suffix)

	start := time.Now()
	e.ok("vm", "run", "-d", "--name", "src")
	t.Logf("vm run took %s", time.Since(start).Round(time.Second))
	e.ok("vm", "exec", "src", "--", "sh", "-c", "echo "+marker+" >/etc/banger-promoted && sync")
	srcID := e.guestIdentity("src")

	e.fails("is running", "image", "promote", "src", "promoted-img")
	e.assertImages(model.DefaultImageName)

	e.ok("vm", "stop", "src")
	e.fails("invalid name", "image", "promote", "src", "Bad_Name")
	e.fails("not found", "image", "promote", "nosuch", "promoted-img")
	e.assertImages(model.DefaultImageName)

	start = time.Now()
	r := e.ok("image", "promote", "src", "promoted-img")
	t.Logf("image promote took %s\n%s", time.Since(start).Round(time.Second), r.stderr)
	img := e.managedImage("promoted-img")
	if st, err := os.Stat(img.RootfsPath); err != nil || st.Size() >= model.DefaultSystemOverlaySize {
		t.Errorf("promoted rootfs: %v, want a file shrunk below the %d-byte system disk the guest grew into", err, model.DefaultSystemOverlaySize)
	} else {
		t.Logf("promoted rootfs: %s", model.HumanBytes(st.Size()))
	}

	e.fails(`image "promoted-img" already exists`, "image", "promote", "src", "promoted-img")
	e.assertImages(model.DefaultImageName, "promoted-img")

	start = time.Now()
	e.ok("vm", "run", "-d", "--name", "dst", "--image", "promoted-img")
	t.Logf("vm run of the promoted image took %s", time.Since(start).Round(time.Second))
	if got := e.ok("vm", "exec", "dst", "--", "cat", "/etc/banger-promoted").stdout; got != marker+"\n" {
		t.Errorf("/etc/banger-promoted in the promoted image: got %q, want %q", got, marker+"\n")
	}
	dstID := e.guestIdentity("dst")
	if dstID.hostname != "dst" {
		t.Errorf("hostname: got %q, want dst", dstID.hostname)
	}
	if dstID.machineID == "" || dstID.machineID == srcID.machineID {
		t.Errorf("machine id: got %q (source vm %q), want a new one", dstID.machineID, srcID.machineID)
	}
	if dstID.hostKey == "" || dstID.hostKey == srcID.hostKey {
		t.Errorf("ssh host key: got %q (source vm %q), want a new one", dstID.hostKey, srcID.hostKey)
	}

	e.ok("vm", "delete", "src")
	e.ok("vm", "delete", "dst")
	e.assertClean("after vm delete")
	e.ok("image", "delete", "promoted-img")
	e.assertImages(model.DefaultImageName)
	if _, err := os.Stat(img.ArtifactDir); !os.IsNotExist(err) {
		t.Errorf("image dir %s left after image delete: %v", img.ArtifactDir, err)
	}
}

// TestImageCachePrune pulls a tiny image from a registry in the env's
// namespace: its layers stay in the cache while the image exists and
// go with cache prune once it is deleted.
func TestImageCachePrune(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()
	host, transport := e.startRegistry()
	// Enough of a guest for the pull to accept it; it is never booted.
	base := entriesLayer(t, []tarEntry{
		{name: "bin/", dir: true, mode: 0o755},
		{name: "bin/sh", body: "#!/bin/true\n", mode: 0o755},
		{name: "usr/", dir: true, mode: 0o755},
		{name: "usr/lib/", dir: true, mode: 0o755},
		{name: "usr/lib/systemd/", dir: true, mode: 0o755},
		{name: "usr/lib/systemd/systemd", body: "#!/bin/true\n", mode: 0o755},
		{name: "usr/sbin/", dir: true, mode: 0o755},
		{name: "usr/sbin/sshd", body: "#!/bin/true\n", mode: 0o755},
	})
	upper := entriesLayer(t, []tarEntry{
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/os-release", body: "ID=fake\n", mode: 0o644},
	})
	pushImage(t, transport, host+"/fake:1", imageOf(t, "amd64", base, upper))
	e.ok("image", "pull", "--insecure", "--quiet", host+"/fake:1", "--name", "fake")

	var img model.Image
	if err := json.Unmarshal([]byte(e.ok("image", "show", "--json", "fake").stdout), &img); err != nil {
		t.Fatalf("decode image: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(img.ArtifactDir, "layers.json"))
	if err != nil {
		t.Fatalf("pulled image records no layers: %v", err)
	}
	var list struct{ Layers []string }
	if err := json.Unmarshal(data, &list); err != nil || len(list.Layers) != 2 {
		t.Fatalf("layers.json: got %s (%v), want 2 layers", data, err)
	}
	var blobs []string
	for _, d := range list.Layers {
		blob := filepath.Join(e.home, "cache", "oci", "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
		if _, err := os.Stat(blob); err != nil {
			t.Fatalf("layer %s is not in the cache: %v", d, err)
		}
		// Older than a pull in progress could be.
		old := time.Now().Add(-time.Hour)
		if err := os.Chtimes(blob, old, old); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, blob)
	}
	listed := func(res api.CachePruneResult) int {
		n := 0
		for _, en := range res.Entries {
			for _, b := range blobs {
				if en.Path == b && en.Kind == api.CacheLayer {
					n++
				}
			}
		}
		return n
	}
	if n := listed(e.cachePrune("--dry-run")); n != 0 {
		t.Errorf("dry run lists %d layers of the pulled image, want none while it exists", n)
	}

	e.ok("image", "delete", "fake")
	res := e.cachePrune("--dry-run")
	if n := listed(res); n != 2 || res.Bytes <= 0 {
		t.Errorf("dry run after image delete: %d layers, %d bytes; want both layers and their size", n, res.Bytes)
	}
	for _, b := range blobs {
		if _, err := os.Stat(b); err != nil {
			t.Errorf("dry run removed %s: %v", b, err)
		}
	}
	text := e.ok("image", "cache", "prune").stdout
	if !strings.Contains(text, "freed") || !strings.Contains(text, filepath.Base(blobs[0])) {
		t.Errorf("cache prune output lacks the layer and the freed total:\n%s", text)
	}
	for _, b := range blobs {
		if _, err := os.Stat(b); !os.IsNotExist(err) {
			t.Errorf("layer %s: got %v, want it removed", b, err)
		}
	}
	if n := listed(e.cachePrune("--dry-run")); n != 0 {
		t.Errorf("dry run after prune lists %d layers, want none", n)
	}
	e.assertImages(model.DefaultImageName)
}

// guestID is what makes a guest one machine.
type guestID struct {
	hostname, machineID, hostKey string
}

func (e *env) guestIdentity(vm string) guestID {
	e.t.Helper()
	out := e.ok("vm", "exec", vm, "--", "sh", "-c", "hostname; cat /etc/machine-id; cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub").stdout
	f := strings.Fields(out)
	if len(f) != 3 {
		e.t.Fatalf("identity of %s: got %q, want hostname, machine id and host key", vm, out)
	}
	return guestID{hostname: f[0], machineID: f[1], hostKey: f[2]}
}

// cachePrune runs image cache prune --json with args.
func (e *env) cachePrune(args ...string) api.CachePruneResult {
	e.t.Helper()
	r := e.ok(append([]string{"image", "cache", "prune", "--json"}, args...)...)
	var res api.CachePruneResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		e.t.Fatalf("decode cache prune: %v\n%s", err, r.stdout)
	}
	return res
}
