// Command fakejailer is a fake Firecracker jailer for tests and manual
// runs (as root): it builds the jail as the jailer does and runs the
// fake Firecracker (fakefc, built static) in it (see fctest.JailerMain).
package main

import (
	"os"

	"banger/internal/vmm/firecracker/fctest"
)

func main() {
	os.Exit(fctest.JailerMain(os.Args[1:], os.Stdout, os.Stderr))
}
