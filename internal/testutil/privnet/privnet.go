// Package privnet runs a package's tests in a private network namespace:
// a TestMain re-executes the test binary under `unshare -n` (as root),
// with only its loopback up, so every bridge, TAP and VM the tests make
// lives in a namespace with no route out of the machine. Test code only.
package privnet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// hostEnv carries the machine's namespace to the re-executed binary,
// which compares its own with it.
const hostEnv = "BANGER_TEST_HOST_NETNS"

// Main runs m: as root outside a private namespace it re-executes the
// test binary under `unshare -n` and exits with its status; otherwise it
// runs the tests here.
func Main(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(hostEnv) == "" {
		os.Exit(reexec())
	}
	os.Exit(m.Run())
}

func reexec() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "find test binary: %v\n", err)
		return 1
	}
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		fmt.Fprintf(os.Stderr, "read network namespace: %v\n", err)
		return 1
	}
	// Loopback up, as in any namespace a program runs in: tests may
	// talk to 127.0.0.1. Nothing else is configured.
	cmd := exec.Command("unshare", append([]string{"-n", "--", "sh", "-c", `ip link set lo up && exec "$0" "$@"`, self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), hostEnv+"="+hostNS)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return exitErr.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "re-exec under unshare -n: %v\n", err)
		return 1
	}
	return 0
}

// Require skips t without root (hint says how to run it) and fails it
// unless it runs in a network namespace other than the machine's.
func Require(t *testing.T, hint string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespace, TAP devices): " + hint)
	}
	self, err := os.Readlink("/proc/self/ns/net")
	host := os.Getenv(hostEnv)
	if err != nil || host == "" || self == host {
		t.Fatalf("refusing to run: not in a private network namespace (self %s, machine %s, %v)", self, host, err)
	}
}
