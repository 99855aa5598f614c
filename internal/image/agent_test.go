package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"banger/internal/errdefs"
)

// writeTestAgent writes a minimal x86-64 ELF executable named
// banger-agent into dir, with a PT_INTERP header when dynamic, and
// returns its path.
func writeTestAgent(t *testing.T, dir string, dynamic bool) string {
	t.Helper()
	var b bytes.Buffer
	phnum := uint16(0)
	if dynamic {
		phnum = 1
	}
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	le := binary.LittleEndian
	for _, v := range []any{
		uint16(2), uint16(62), uint32(1), // ET_EXEC, x86-64, version
		uint64(0x401000), uint64(64), uint64(0), // entry, phoff, shoff
		uint32(0), uint16(64), uint16(56), phnum, // flags, ehsize, phentsize, phnum
		uint16(64), uint16(0), uint16(0), // shentsize, shnum, shstrndx
	} {
		binary.Write(&b, le, v)
	}
	if dynamic {
		interp := "/lib64/ld-linux-x86-64.so.2\x00"
		off := uint64(64 + 56)
		for _, v := range []any{
			uint32(3), uint32(4), off, off, off, // PT_INTERP, PF_R, offset, vaddr, paddr
			uint64(len(interp)), uint64(len(interp)), uint64(1), // filesz, memsz, align
		} {
			binary.Write(&b, le, v)
		}
		b.WriteString(interp)
	}
	p := filepath.Join(dir, AgentName)
	if err := os.WriteFile(p, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckAgent(t *testing.T) {
	dir := t.TempDir()
	static := writeTestAgent(t, dir, false)
	if err := checkAgent(static); err != nil {
		t.Errorf("checkAgent(static): got %v, want nil", err)
	}
	tests := []struct {
		name, path string
		kind       error
		contains   string
	}{
		{"empty", "", errdefs.ErrInvalid, "no banger-agent binary given"},
		{"missing", filepath.Join(dir, "nope"), errdefs.ErrNotFound, "expected at " + filepath.Join(dir, "nope")},
		{"directory", dir, errdefs.ErrInvalid, "not a regular file"},
		{"dynamic", writeTestAgent(t, t.TempDir(), true), errdefs.ErrInvalid, "dynamically linked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkAgent(tt.path)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("got %v, want %v containing %q", err, tt.kind, tt.contains)
			}
		})
	}
}

func TestFindAgentIn(t *testing.T) {
	a, b, empty := t.TempDir(), t.TempDir(), t.TempDir()
	writeTestAgent(t, b, false)
	got, err := findAgentIn([]string{empty, b, a})
	if err != nil || got != filepath.Join(b, AgentName) {
		t.Errorf("got %q, %v, want %s", got, err, filepath.Join(b, AgentName))
	}
	writeTestAgent(t, a, false)
	if got, _ := findAgentIn([]string{a, b}); got != filepath.Join(a, AgentName) {
		t.Errorf("got %q, want the first directory's %s", got, filepath.Join(a, AgentName))
	}
	os.Mkdir(filepath.Join(empty, AgentName+".d"), 0o755)
	_, err = findAgentIn([]string{empty, "/nonexistent"})
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), filepath.Join(empty, AgentName)) || !strings.Contains(err.Error(), "/nonexistent/banger-agent") {
		t.Errorf("got %v, want ErrNotFound listing both places", err)
	}
}

func TestFindAgentLooksNextToExecutable(t *testing.T) {
	_, err := FindAgent()
	if err == nil {
		t.Skip("a banger-agent is installed on this machine; nothing to check about the error")
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	for _, want := range []string{filepath.Join(filepath.Dir(exe), AgentName), "/usr/local/lib/banger/banger-agent", "/usr/lib/banger/banger-agent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to name %s", err, want)
		}
	}
}

func TestInstallAgent(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	src := writeTestAgent(t, t.TempDir(), false)
	overlay := filepath.Join(t.TempDir(), "late")
	if err := writeOverlay(overlay, false); err != nil {
		t.Fatal(err)
	}
	digest, err := installAgent(overlay, src)
	if err != nil {
		t.Fatalf("installAgent: %v", err)
	}
	data, _ := os.ReadFile(src)
	sum := sha256.Sum256(data)
	if want := "sha256:" + hex.EncodeToString(sum[:]); digest != want {
		t.Errorf("got digest %s, want %s", digest, want)
	}
	if again, err := AgentDigest(src); err != nil || again != digest {
		t.Errorf("AgentDigest: got %s, %v, want %s", again, err, digest)
	}
	dst := filepath.Join(overlay, AgentImagePath)
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("got %d bytes at %s, %v, want a copy of the agent", len(got), dst, err)
	}
	for p, want := range map[string]os.FileMode{dst: 0o755, filepath.Dir(dst): 0o755, filepath.Join(overlay, "usr/local"): 0o755} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: got %v, %v, want mode %v", p, st.Mode().Perm(), err, want)
		}
	}
	// A different binary, a different digest: images built with another
	// agent are told apart.
	os.WriteFile(src, append(data, 0), 0o755)
	if other, _ := AgentDigest(src); other == digest {
		t.Errorf("got the same digest %s for a changed agent, want a different one", other)
	}
}

func TestAgentUnit(t *testing.T) {
	u := parseUnit(t, guestText(t, "banger-agent.service"))
	checks := []struct {
		section, key string
		want         []string
	}{
		{"Unit", "After", []string{"local-fs.target"}},
		{"Service", "ExecStart", []string{AgentImagePath}},
		{"Service", "Restart", []string{"always"}},
		{"Service", "RestartSec", []string{"1"}},
		{"Unit", "StartLimitIntervalSec", []string{"0"}},
		{"Install", "WantedBy", []string{"multi-user.target"}},
	}
	for _, c := range checks {
		if got := u[c.section][c.key]; strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("[%s] %s: got %q, want %q", c.section, c.key, got, c.want)
		}
	}
	var dst string
	for _, f := range guestFiles {
		if f.Src == "banger-agent.service" {
			dst = f.Dst
		}
	}
	if dst != "/etc/systemd/system/banger-agent.service" {
		t.Errorf("got destination %q, want /etc/systemd/system/banger-agent.service", dst)
	}
	found := false
	for _, unit := range enabledUnits {
		found = found || unit == "banger-agent.service"
	}
	if !found || !strings.Contains(guestText(t, customizeScript), "systemctl enable "+strings.Join(enabledUnits, " ")) {
		t.Errorf("banger-agent.service is not enabled by customize.sh (enabledUnits %q)", enabledUnits)
	}
}
