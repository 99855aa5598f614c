package image

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"banger/internal/errdefs"
)

// AgentName is the guest agent's file name, on the host and in images.
const AgentName = "banger-agent"

// AgentImagePath is where images carry the agent (its unit runs it).
const AgentImagePath = "/usr/local/bin/" + AgentName

// agentLibDirs are where an installed banger keeps the agent, after the
// directory of the running executable.
var agentLibDirs = []string{"/usr/local/lib/banger", "/usr/lib/banger"}

// FindAgent returns the banger-agent binary to install into images: the
// one next to the running executable (symlinks resolved), else the first
// in /usr/local/lib/banger/ or /usr/lib/banger/.
func FindAgent() (string, error) {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dirs = append(dirs, filepath.Dir(exe))
	}
	return findAgentIn(append(dirs, agentLibDirs...))
}

func findAgentIn(dirs []string) (string, error) {
	var tried []string
	for _, d := range dirs {
		p := filepath.Join(d, AgentName)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", errdefs.NotFound(fmt.Errorf("%s not found (looked at %s): build it with CGO_ENABLED=0 go build -o bin/%s ./cmd/%s and install it next to bangerd",
		AgentName, strings.Join(tried, ", "), AgentName, AgentName))
}

// checkAgent verifies that path is a static executable the guest can run.
func checkAgent(path string) error {
	if path == "" {
		return errdefs.Invalid(fmt.Errorf("no %s binary given: it goes into every image; FindAgent looks next to bangerd, then in %s",
			AgentName, strings.Join(agentLibDirs, " and ")))
	}
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return errdefs.NotFound(fmt.Errorf("%s expected at %s, which does not exist: build it with CGO_ENABLED=0 go build -o %s ./cmd/%s",
			AgentName, path, path, AgentName))
	}
	if err != nil {
		return fmt.Errorf("%s at %s: %w", AgentName, path, err)
	}
	if !st.Mode().IsRegular() {
		return errdefs.Invalid(fmt.Errorf("%s at %s is not a regular file", AgentName, path))
	}
	f, err := elf.Open(path)
	if err != nil {
		return errdefs.Invalid(fmt.Errorf("%s at %s is not an ELF executable: %w", AgentName, path, err))
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errdefs.Invalid(fmt.Errorf("%s at %s is dynamically linked: build it static with CGO_ENABLED=0", AgentName, path))
		}
	}
	return nil
}

// installAgent copies the agent at src to AgentImagePath under the
// overlay dir, mode 0755 with 0755 directories, and returns its digest.
func installAgent(dir, src string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	dst := filepath.Join(dir, filepath.FromSlash(AgentImagePath))
	if err := mkdirAll0755(dir, filepath.Dir(dst)); err != nil {
		return "", err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		return "", err
	}
	return digestPrefix + hex.EncodeToString(h.Sum(nil)), nil
}
