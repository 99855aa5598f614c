//go:build faultinject

package vm

import (
	"os"
	"strings"
	"syscall"
)

// EnvFaultStep names the step after which a bangerd built with the
// faultinject tag kills itself, as a crash would. Only test builds read
// it: production builds have no such hook. Several steps may be given,
// separated by commas; "create/record" names a step of one operation,
// "record" the step of any operation.
const EnvFaultStep = "BANGER_FAULT_STEP"

func init() {
	steps := os.Getenv(EnvFaultStep)
	if steps == "" {
		return
	}
	want := map[string]bool{}
	for _, s := range strings.Split(steps, ",") {
		want[strings.TrimSpace(s)] = true
	}
	faultHook = func(step string) error {
		if want[step] {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the kill is asynchronous; never go on past the step
		}
		return nil
	}
}
