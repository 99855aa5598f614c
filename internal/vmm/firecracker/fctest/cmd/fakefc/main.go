// Command fakefc is a fake Firecracker for tests and manual runs: it
// serves Firecracker's API on --api-sock, validating every request
// against the specification named by BANGER_FAKEFC_SPEC (see fctest).
package main

import (
	"os"

	"banger/internal/vmm/firecracker/fctest"
)

func main() {
	os.Exit(fctest.Main(os.Args[1:], os.Stdout, os.Stderr))
}
