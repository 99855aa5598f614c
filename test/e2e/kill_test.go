//go:build e2e

package e2e

import "syscall"

func killPID(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }
