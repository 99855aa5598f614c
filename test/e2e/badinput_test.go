//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInput checks that each bad input gets a clear one-line error, a
// non-zero exit, and leaves no record, disk, TAP or process behind.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"uppercase name", []string{"vm", "create", "--no-start", "--name", "Demo"}, "invalid name"},
		{"underscore name", []string{"vm", "create", "--no-start", "--name", "my_vm"}, "invalid name"},
		{"leading dash name", []string{"vm", "create", "--no-start", "--name=-x"}, "must not start or end with '-'"},
		{"long name", []string{"vm", "create", "--no-start", "--name", "a234567890123456789012345678901234567890123456789012345678901234"}, "at most 63"},
		{"empty size", []string{"vm", "create", "--no-start", "--disk-size", ""}, "size is required"},
		{"unit only", []string{"vm", "create", "--no-start", "--disk-size", "G"}, "missing number"},
		{"negative size", []string{"vm", "create", "--no-start", "--disk-size=-5G"}, "must be positive"},
		{"zero size", []string{"vm", "create", "--no-start", "--disk-size", "0"}, "must be positive"},
		{"overflow size", []string{"vm", "create", "--no-start", "--disk-size", "99999999999999999999G"}, "exceeds the maximum"},
		{"over ceiling", []string{"vm", "create", "--no-start", "--disk-size", "129G"}, "exceeds the maximum of 128G"},
		{"bad overlay size", []string{"vm", "create", "--no-start", "--system-overlay-size", "12X"}, "--system-overlay-size"},
		{"bad memory", []string{"vm", "create", "--no-start", "--memory", "12"}, "--memory"},
		{"bad vcpu", []string{"vm", "create", "--no-start", "--vcpu", "0"}, "--vcpu"},
		{"unknown image", []string{"vm", "create", "--no-start", "--image", "nope"}, `image "nope" not found`},
		{"unknown vm start", []string{"vm", "start", "ghost"}, `vm "ghost" not found`},
		{"unknown vm show", []string{"vm", "show", "ghost"}, `vm "ghost" not found`},
		{"unknown vm exec", []string{"vm", "exec", "ghost", "--", "true"}, `vm "ghost" not found`},
		{"unknown vm delete", []string{"vm", "delete", "ghost"}, `vm "ghost" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.fails(tc.want, tc.args...)
			e.assertClean(tc.name)
		})
	}

	t.Run("several unknown vms", func(t *testing.T) {
		// Each failure is its own line, with the operation id that
		// finds it in the daemon's log.
		r := e.banger("vm", "start", "ghost1", "ghost2")
		if r.code == 0 {
			t.Fatalf("vm start ghost1 ghost2: succeeded, want failure")
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if len(lines) != 2 {
			t.Fatalf("vm start ghost1 ghost2: got %d error lines, want 2:\n%s", len(lines), r.stderr)
		}
		for _, name := range []string{"ghost1", "ghost2"} {
			if want := fmt.Sprintf(`banger: %s: vm %q not found [op-`, name, name); !strings.Contains(r.stderr, want) {
				t.Errorf("vm start ghost1 ghost2: stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		e.assertClean("several unknown vms")
	})

	t.Run("duplicate name", func(t *testing.T) {
		e.ok("vm", "create", "--no-start", "--name", "twin")
		e.fails(`vm "twin" already exists`, "vm", "create", "--no-start", "--name", "twin")
		if vms := e.vms(); len(vms) != 1 {
			t.Errorf("got %d vms after duplicate create, want 1", len(vms))
		}
		e.ok("vm", "delete", "twin")
		e.assertClean("duplicate name")
	})

	t.Run("missing kernel", func(t *testing.T) {
		dir := t.TempDir()
		cache := imageCacheDir(t)
		kernel := filepath.Join(dir, "vmlinuz")
		data, err := os.ReadFile(filepath.Join(cache, "vmlinuz"))
		if err != nil {
			t.Skipf("no cached kernel to copy: %v", err)
		}
		os.WriteFile(kernel, data, 0o644)
		e.ok("image", "register", "--name", "nokernel", "--rootfs", filepath.Join(cache, "rootfs.ext4"), "--kernel", kernel)
		os.Remove(kernel)
		e.fails("kernel "+kernel+" is missing", "vm", "create", "--name", "nk", "--image", "nokernel")
		e.assertClean("missing kernel")
		e.fails("--kernel", "image", "register", "--name", "nokernel2", "--rootfs", filepath.Join(cache, "rootfs.ext4"), "--kernel", kernel)
	})
}
