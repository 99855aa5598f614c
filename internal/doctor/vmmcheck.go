package doctor

import (
	"context"
	"fmt"

	"banger/internal/config"
	"banger/internal/model"
	"banger/internal/vmm/firecracker"
)

// vmmBinary is what the checks learned about the firecracker or jailer
// binary: where it is and the version it printed.
type vmmBinary struct {
	name    string // as configured: a name on PATH or a path
	path    string // "" when not found
	printed string // first line of its --version output
	runErr  error  // --version failed or printed nothing
	version firecracker.Version
	parsed  bool
}

func probeVMMBinary(ctx context.Context, p probes, name string) vmmBinary {
	b := vmmBinary{name: name}
	path, err := p.lookPath(name)
	if err != nil {
		return b
	}
	b.path = path
	if b.printed, b.runErr = p.version(ctx, path, "--version"); b.runErr != nil {
		return b
	}
	if v, err := firecracker.ParseVersion(b.printed); err == nil {
		b.version, b.parsed = v, true
	}
	return b
}

// supported reports whether the driver accepts the binary's version.
func (b vmmBinary) supported() bool {
	return b.path != "" && b.parsed && !b.version.Less(firecracker.MinVersion)
}

// firecrackerRuns reports whether the daemon's Firecracker version check
// passes: a supported firecracker and, when jailer_enabled, a jailer of
// the same release. Without it, vmm = "auto" uses QEMU.
func firecrackerRuns(cfg model.DaemonConfig, fc, jl vmmBinary) bool {
	if !fc.supported() {
		return false
	}
	return !cfg.JailerEnabled || (jl.supported() && jl.version == fc.version)
}

// The fixes for the firecracker and jailer checks.
const (
	fixFirecracker = "install the firecracker release binary on PATH (or set firecracker_bin in config.toml)"
	fixRelease     = "install Firecracker %s or later from its release archive, firecracker and jailer together; or point %s at that binary in config.toml"
	fixPair        = "install firecracker and jailer from one Firecracker release (both are in its release archive), or point firecracker_bin and jailer_bin at such a pair in config.toml"
)

// firecrackerCheck: Firecracker is optional unless vmm = "firecracker";
// a version the driver refuses is a failure then, a warning otherwise.
func firecrackerCheck(cfg model.DaemonConfig, fc vmmBinary) Check {
	c := Check{Name: "firecracker"}
	bad, consequence := Warn, "vmm = "+quoted(orAuto(cfg.VMM))+" uses QEMU"
	if cfg.VMM == config.VMMFirecracker {
		bad, consequence = Fail, `vmm = "firecracker" needs it`
	}
	if fc.path == "" {
		c.Status, c.Detail, c.Fix = bad, fmt.Sprintf("%s not found; %s", fc.name, consequence), fixFirecracker
		if bad == Warn {
			c.Fix += "; only needed for Firecracker"
		}
		return c
	}
	switch cfg.VMM {
	case config.VMMFirecracker:
		consequence = `bangerd will not start with vmm = "firecracker"`
	case config.VMMQEMU:
		consequence = `vmm = "qemu" does not use it`
	default:
		consequence = `vmm = "auto" will use QEMU`
	}
	return judgeVersion(c, "firecracker", fc, bad, consequence)
}

// jailerCheck: the jailer is needed when Firecracker runs jailed, and
// must come from the same release as firecracker (the driver refuses a
// pair that differs).
func jailerCheck(cfg model.DaemonConfig, fc, jl vmmBinary) Check {
	c := Check{Name: "jailer"}
	bad := Warn
	var consequence string
	switch {
	case !cfg.JailerEnabled:
		consequence = "Firecracker runs unjailed (jailer_enabled = false)"
	case cfg.VMM == config.VMMFirecracker:
		bad, consequence = Fail, `bangerd will not start with vmm = "firecracker" and jailer_enabled = true`
	case cfg.VMM == config.VMMQEMU:
		consequence = `vmm = "qemu" does not use it`
	default:
		consequence = `vmm = "auto" will use QEMU (jailer_enabled = true needs it)`
	}
	if jl.path == "" {
		why := "Firecracker runs unjailed without it"
		if cfg.JailerEnabled {
			why = consequence
		}
		c.Status, c.Detail = bad, fmt.Sprintf("%s not found; %s", jl.name, why)
		c.Fix = "install the jailer from the firecracker release at " + jl.name + " (or set jailer_bin in config.toml)"
		return c
	}
	c = judgeVersion(c, "jailer", jl, bad, consequence)
	if c.Status != Pass || !fc.parsed || fc.version == jl.version {
		return c
	}
	if !cfg.JailerEnabled {
		consequence = "jailer_enabled = true would not work"
	}
	c.Status = bad
	c.Detail = fmt.Sprintf("jailer %s (%s) and firecracker %s (%s) differ: Firecracker supports only a jailer of its own release; %s",
		jl.version, jl.path, fc.version, fc.path, consequence)
	c.Fix = fixPair
	return c
}

// judgeVersion sets c for a binary that was found: PASS for a version
// the driver runs, else bad, saying what was printed and the
// consequence.
func judgeVersion(c Check, what string, b vmmBinary, bad Status, consequence string) Check {
	setting := what + "_bin"
	switch {
	case b.runErr != nil:
		c.Status = bad
		c.Detail = fmt.Sprintf("%s: cannot tell its version (%v); %s", b.path, b.runErr, consequence)
		c.Fix = fmt.Sprintf(fixRelease, firecracker.MinVersion, setting)
	case !b.parsed:
		c.Status = bad
		c.Detail = fmt.Sprintf("%s --version printed %q, not a version banger can read; %s", b.path, b.printed, consequence)
		c.Fix = fmt.Sprintf("point %s in config.toml at the %s binary of a Firecracker release, %s or later (it prints \"%s vX.Y.Z\")",
			setting, what, firecracker.MinVersion, titled(what))
	case b.version.Less(firecracker.MinVersion):
		c.Status = bad
		c.Detail = fmt.Sprintf("%s (%s) is older than %s, the oldest banger runs; %s", b.path, b.printed, firecracker.MinVersion, consequence)
		c.Fix = fmt.Sprintf(fixRelease, firecracker.MinVersion, setting)
	default:
		c.Status, c.Detail = Pass, b.path+" ("+b.printed+")"
	}
	return c
}

func quoted(s string) string { return `"` + s + `"` }

// titled is what=firecracker as the binary prints it: "Firecracker".
func titled(what string) string {
	if what == "" {
		return what
	}
	return string(what[0]-'a'+'A') + what[1:]
}
