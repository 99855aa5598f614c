//go:build integration

package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
)

const (
	promotedFile    = "/etc/banger-promoted"
	promotedContent = "promoted by the test\n"
	// grownSize is the disk a guest's growroot grew the filesystem to.
	grownSize = 1 << 30
)

// makeGuestRootfs builds a small rootfs with the identity files of a VM
// that has booted: host keys, machine id, hostname, random seed.
func makeGuestRootfs(t *testing.T, dir string) string {
	t.Helper()
	tree := filepath.Join(dir, "tree")
	files := map[string]string{
		"etc/ssh/ssh_host_ed25519_key":     "private\n",
		"etc/ssh/ssh_host_ed25519_key.pub": "public\n",
		"etc/ssh/ssh_host_rsa_key":         "private\n",
		"etc/ssh/sshd_config":              "PermitRootLogin prohibit-password\n",
		"etc/machine-id":                   "0123456789abcdef0123456789abcdef\n",
		"etc/hostname":                     "old-vm\n",
		"var/lib/dbus/machine-id":          "0123456789abcdef0123456789abcdef\n",
		"var/lib/systemd/random-seed":      "seed",
		"usr/bin/tool":                     strings.Repeat("x", 1<<20),
	}
	for name, body := range files {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(tree, "etc/machine-id"), 0o444); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "rootfs.ext4")
	if err := MakeExt4FromDir(t.Context(), tree, img, 96<<20, "banger-root"); err != nil {
		t.Fatalf("MakeExt4FromDir: %v", err)
	}
	return img
}

// guestChanges makes what a VM leaves on its system disk over base: a
// raw copy with a new file, grown to grownSize as growroot does.
func guestChanges(t *testing.T, dir, base string) string {
	t.Helper()
	changed := filepath.Join(dir, "changed.raw")
	if out, err := exec.Command("cp", "--sparse=always", base, changed).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if err := WriteFile(t.Context(), changed, promotedFile, []byte(promotedContent), 0o644, 0, 0); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if err := os.Truncate(changed, grownSize); err != nil {
		t.Fatal(err)
	}
	if _, err := hostexec.Run(t.Context(), "resize2fs", changed); err != nil {
		t.Fatalf("resize2fs: %v", err)
	}
	return changed
}

func TestFlattenRootfs(t *testing.T) {
	requireTools(t, "qemu-img", "qemu-io", "mkfs.ext4", "debugfs", "e2fsck", "resize2fs")
	dir := t.TempDir()
	base := makeGuestRootfs(t, dir)
	changed := guestChanges(t, dir, base)
	// The qcow2 overlay a QEMU VM over base would have after those changes.
	overlay := filepath.Join(dir, "system.qcow2")
	if err := CreateOverlay(t.Context(), base, overlay, grownSize); err != nil {
		t.Fatalf("CreateOverlay: %v", err)
	}
	if _, err := hostexec.Run(t.Context(), "qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", changed, overlay); err != nil {
		t.Fatalf("write changes into the overlay: %v", err)
	}

	tests := []struct {
		name   string
		source string
		format string
	}{
		{"qcow2 overlay", overlay, FormatQCOW2},
		{"raw disk", changed, FormatRaw},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "rootfs.ext4")
			start := time.Now()
			size, err := FlattenRootfs(t.Context(), FlattenRequest{Source: tc.source, Format: tc.format, Output: out})
			if err != nil {
				t.Fatalf("FlattenRootfs: %v", err)
			}
			if err := ResetIdentity(t.Context(), out); err != nil {
				t.Fatalf("ResetIdentity: %v", err)
			}
			t.Logf("flatten and reset took %s", time.Since(start).Round(time.Millisecond))
			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != size {
				t.Errorf("got file size %d, FlattenRootfs said %d", st.Size(), size)
			}
			if size >= grownSize || size%flattenRounding != 0 {
				t.Errorf("got size %d, want below the grown %d and a multiple of 64 MiB (shrunk plus headroom)", size, grownSize)
			}
			if alloc, _ := AllocatedBytes(out); alloc > 64<<20 {
				t.Errorf("got %d bytes allocated, want a sparse file under 64 MiB", alloc)
			}
			sb, err := readSuperblock(out)
			if err != nil {
				t.Fatal(err)
			}
			if got := int64(sb.BlockCount * sb.BlockSize); got != size || sb.VolumeLabel != "banger-root" {
				t.Errorf("got filesystem of %d bytes labelled %q, want %d bytes labelled banger-root", got, sb.VolumeLabel, size)
			}
			fsckClean(t, out)

			if got, err := ReadFile(t.Context(), out, promotedFile); err != nil || string(got) != promotedContent {
				t.Errorf("read %s: got %q (%v), want %q", promotedFile, got, err, promotedContent)
			}
			if got, err := ReadFile(t.Context(), out, "/usr/bin/tool"); err != nil || len(got) != 1<<20 {
				t.Errorf("read /usr/bin/tool: got %d bytes (%v), want %d", len(got), err, 1<<20)
			}
			names, err := ListDir(t.Context(), out, "/etc/ssh")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(names, ",") != "sshd_config" {
				t.Errorf("got /etc/ssh holding %v, want only sshd_config (host keys removed)", names)
			}
			for _, p := range []string{"/etc/hostname", "/var/lib/dbus/machine-id", "/var/lib/systemd/random-seed"} {
				if info := statPath(t, out, p); info.Exists {
					t.Errorf("%s is still there: %+v", p, info)
				}
			}
			want := inodeInfo{Exists: true, Type: "regular", Mode: 0o444, Size: 0}
			if got := statPath(t, out, "/etc/machine-id"); got != want {
				t.Errorf("got /etc/machine-id %+v, want %+v", got, want)
			}
			if tc.format == FormatRaw {
				// The source is left as it was.
				if got, err := ReadFile(t.Context(), tc.source, "/etc/hostname"); err != nil || string(got) != "old-vm\n" {
					t.Errorf("source /etc/hostname: got %q (%v), want it untouched", got, err)
				}
			}
		})
	}

	t.Run("output exists", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "rootfs.ext4")
		if err := os.WriteFile(out, []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := FlattenRootfs(t.Context(), FlattenRequest{Source: changed, Format: FormatRaw, Output: out})
		if !errors.Is(err, errdefs.ErrAlreadyExists) {
			t.Errorf("got %v, want ErrAlreadyExists", err)
		}
		if got, _ := os.ReadFile(out); string(got) != "keep" {
			t.Errorf("got output %q, want it untouched", got)
		}
	})

	t.Run("not ext4", func(t *testing.T) {
		junk := filepath.Join(t.TempDir(), "junk.raw")
		if err := os.WriteFile(junk, bytes.Repeat([]byte{0xab}, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "rootfs.ext4")
		_, err := FlattenRootfs(t.Context(), FlattenRequest{Source: junk, Format: FormatRaw, Output: out})
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("got %v, want ErrInvalid", err)
		}
		if _, err := os.Lstat(out); !os.IsNotExist(err) {
			t.Errorf("output left behind: %v", err)
		}
	})

	t.Run("overlay in use", func(t *testing.T) {
		// qemu-io holds the overlay open read-write, as a running QEMU does.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		cmd := exec.CommandContext(ctx, "qemu-io", "-f", "qcow2", overlay)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			io.WriteString(stdin, "quit\n")
			stdin.Close()
			cmd.Wait()
		}()
		// Wait until it has the image open: it answers a command.
		io.WriteString(stdin, "info\n")
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(stdout.String(), "cluster size") {
			if time.Now().After(deadline) {
				t.Fatalf("qemu-io did not open the overlay: %q", stdout.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		out := filepath.Join(t.TempDir(), "rootfs.ext4")
		_, err = FlattenRootfs(t.Context(), FlattenRequest{Source: overlay, Format: FormatQCOW2, Output: out})
		if err == nil || !strings.Contains(err.Error(), "lock") {
			t.Errorf("got %v, want a lock error", err)
		}
		if _, err := os.Lstat(out); !os.IsNotExist(err) {
			t.Errorf("output left behind: %v", err)
		}
	})
}

func TestResetIdentityBareImage(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs")
	// No /etc/ssh, no machine id: nothing to do, and no error.
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "rootfs.ext4")
	if err := MakeExt4FromDir(t.Context(), tree, img, 32<<20, "banger-root"); err != nil {
		t.Fatal(err)
	}
	if err := ResetIdentity(t.Context(), img); err != nil {
		t.Errorf("got %v, want nil", err)
	}
	if err := RemoveFiles(t.Context(), img, "/etc"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("RemoveFiles of a directory: got %v, want ErrInvalid", err)
	}
	if _, err := ListDir(t.Context(), img, "/nosuch"); !errdefs.IsNotFound(err) {
		t.Errorf("ListDir of a missing directory: got %v, want ErrNotFound", err)
	}
}
