package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent goes into every image: it must stay small and static, so it
// pulls in none of the daemon's heavy dependencies and no cgo.
func TestImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH to list the agent's dependencies")
	}
	cmd := exec.Command(goTool, "list", "-deps", ".")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, dep := range deps {
		for _, banned := range []string{"sqlite", "netlink", "nftables", "github.com/spf13/cobra", "golang.org/x/crypto", "banger/internal/daemon", "banger/internal/vm", "runtime/cgo"} {
			if strings.Contains(dep, banned) {
				t.Errorf("banger-agent depends on %s, want none of %s", dep, banned)
			}
		}
	}
	if len(deps) < 10 {
		t.Errorf("got %d dependencies, want the real list", len(deps))
	}
}
