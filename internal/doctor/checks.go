package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	mdns "github.com/miekg/dns"

	"banger/internal/api"
	"banger/internal/config"
	"banger/internal/model"
	"banger/internal/rpc"
)

// Free disk thresholds under the state dir: an image takes a couple of
// GiB, each VM's disks grow as the guest writes.
const (
	diskWarnBytes = 5 << 30
	diskFailBytes = 1 << 30
)

// dnsProbeName is the name the DNS check asks for; the server answers
// authoritatively for anything under .vm, NXDOMAIN when no VM has it.
const dnsProbeName = "banger-doctor-probe.vm."

func run(ctx context.Context, o Options, p probes) []Check {
	cfg := o.Config
	kvmOK, kvmWhy := p.kvm()
	fc := probeVMMBinary(ctx, p, cfg.FirecrackerBin)
	jl := probeVMMBinary(ctx, p, cfg.JailerBin)
	st, daemonErr := p.daemon(ctx, o.Layout.Socket())
	return []Check{
		kvmCheck(cfg.VMM, kvmOK, kvmWhy),
		qemuCheck(ctx, p, cfg.VMM, kvmOK && firecrackerRuns(cfg, fc, jl)),
		firecrackerCheck(cfg, fc),
		jailerCheck(cfg, fc, jl),
		deviceMapperCheck(ctx, p, o.Layout.VMsDir()),
		loopCheck(ctx, p),
		tunCheck(p),
		toolCheck(ctx, p, tool{check: "nftables", name: "nft", args: []string{"--version"}, pkg: "nftables",
			missing: Warn, why: "per-VM NAT (--nat) needs it"}),
		e2fsprogsCheck(ctx, p),
		toolCheck(ctx, p, tool{check: "qemu-img", name: "qemu-img", args: []string{"--version"}, pkg: "qemu-utils",
			missing: Fail, why: "system overlays and image disks need it"}),
		debootstrapCheck(ctx, p),
		toolCheck(ctx, p, tool{check: "ssh", name: "ssh", args: []string{"-V"}, pkg: "openssh-client",
			missing: Fail, why: "vm ssh and vm run need it"}),
		daemonCheck(o.Layout.Socket(), st, daemonErr),
		dnsCheck(ctx, p, cfg.DNSListen, daemonErr),
		diskCheck(p, o.Layout.StateDir),
	}
}

// kvmCheck: KVM is required by Firecracker only; QEMU falls back to
// software emulation.
func kvmCheck(vmmName string, ok bool, why string) Check {
	c := Check{Name: "kvm"}
	switch {
	case ok:
		c.Status, c.Detail = Pass, "usable: "+why
	case vmmName == config.VMMFirecracker:
		c.Status, c.Detail = Fail, "not usable: "+why
		c.Fix = `Firecracker needs KVM: use a host whose CPU exposes vmx/svm (enable nested virtualisation on a cloud VM) or set vmm = "qemu"`
	default:
		c.Status, c.Detail = Warn, "not usable: "+why+"; QEMU runs guests in software emulation (TCG), several times slower"
		c.Fix = "for KVM speed, use a host whose CPU exposes vmx/svm (enable nested virtualisation on a cloud VM)"
	}
	return c
}

// qemuCheck: QEMU is needed unless Firecracker is configured, or auto
// would pick it (a supported Firecracker, and jailer when enabled, and
// KVM usable).
func qemuCheck(ctx context.Context, p probes, vmmName string, firecrackerUsable bool) Check {
	missing := Fail
	why := "it runs the VMs"
	if vmmName == config.VMMFirecracker || (vmmName == config.VMMAuto && firecrackerUsable) {
		missing, why = Warn, "Firecracker runs the VMs here"
	}
	return toolCheck(ctx, p, tool{check: "qemu", name: "qemu-system-x86_64", args: []string{"--version"},
		pkg: "qemu-system-x86", missing: missing, why: why})
}
func orAuto(v string) string {
	if v == "" {
		return config.VMMAuto
	}
	return v
}

func deviceMapperCheck(ctx context.Context, p probes, vmsDir string) Check {
	c := Check{Name: "device-mapper"}
	ok, why := p.dm(ctx)
	if ok {
		c.Status, c.Detail = Pass, why+"; Firecracker root disks are dm-snapshots"
		return c
	}
	backend, _ := p.rootfs(ctx, vmsDir)
	c.Status = Warn
	c.Detail = fmt.Sprintf("not available (%s); Firecracker root disks fall back to %s copies", why, backend)
	c.Fix = "only for Firecracker: use a kernel with device-mapper (CONFIG_BLK_DEV_DM, dm_snapshot; sudo modprobe dm_snapshot) and install dmsetup"
	return c
}

func loopCheck(ctx context.Context, p probes) Check {
	c := Check{Name: "loop devices"}
	if err := p.charDevice("/dev/loop-control"); err != nil {
		c.Status, c.Detail = Warn, fmt.Sprintf("no /dev/loop-control (%v); dm-snapshot root disks need loop devices", err)
		c.Fix = "sudo modprobe loop"
		return c
	}
	path, err := p.lookPath("losetup")
	if err != nil {
		c.Status, c.Detail = Warn, "/dev/loop-control present, losetup not found"
		c.Fix = "sudo apt-get install mount"
		return c
	}
	c.Status, c.Detail = Pass, "/dev/loop-control, "+describe(ctx, p, path, "--version")
	return c
}

func tunCheck(p probes) Check {
	c := Check{Name: "tun"}
	if err := p.charDevice("/dev/net/tun"); err != nil {
		c.Status, c.Detail = Fail, fmt.Sprintf("no /dev/net/tun (%v); VM network interfaces are TAP devices", err)
		c.Fix = "sudo modprobe tun"
		return c
	}
	c.Status, c.Detail = Pass, "/dev/net/tun present"
	return c
}

func e2fsprogsCheck(ctx context.Context, p probes) Check {
	c := Check{Name: "e2fsprogs"}
	var missing []string
	for _, name := range []string{"mkfs.ext4", "debugfs", "resize2fs", "e2fsck", "tune2fs"} {
		if _, err := p.lookPath(name); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		c.Status, c.Detail = Fail, "missing "+strings.Join(missing, ", ")+"; work disks and images need them"
		c.Fix = "sudo apt-get install e2fsprogs"
		return c
	}
	path, _ := p.lookPath("mkfs.ext4")
	c.Status, c.Detail = Pass, "mkfs.ext4, debugfs, resize2fs, e2fsck, tune2fs: "+describe(ctx, p, path, "-V")
	return c
}

func debootstrapCheck(ctx context.Context, p probes) Check {
	c := Check{Name: "debootstrap"}
	var found []string
	for _, name := range []string{"mmdebstrap", "debootstrap"} {
		if path, err := p.lookPath(name); err == nil {
			found = append(found, describe(ctx, p, path, "--version"))
		}
	}
	if len(found) == 0 {
		c.Status, c.Detail = Fail, "neither mmdebstrap nor debootstrap found; the default image is built with one of them"
		c.Fix = "sudo apt-get install mmdebstrap"
		return c
	}
	c.Status, c.Detail = Pass, strings.Join(found, "; ")
	return c
}

// tool describes a check that a binary exists and prints its version.
type tool struct {
	check   string   // check name
	name    string   // binary name or path
	args    []string // version arguments
	pkg     string   // Debian package, for the fix
	missing Status   // status when absent
	why     string   // what needs it
}

func toolCheck(ctx context.Context, p probes, t tool) Check {
	c := Check{Name: t.check}
	path, err := p.lookPath(t.name)
	if err != nil {
		c.Status, c.Detail = t.missing, fmt.Sprintf("%s not found; %s", t.name, t.why)
		if t.pkg != "" {
			c.Fix = "sudo apt-get install " + t.pkg
		}
		return c
	}
	c.Status, c.Detail = Pass, describe(ctx, p, path, t.args...)
	return c
}

// describe is "PATH (VERSION)", or just PATH when the version command
// fails.
func describe(ctx context.Context, p probes, path string, args ...string) string {
	v, err := p.version(ctx, path, args...)
	if err != nil || v == "" {
		return path
	}
	return path + " (" + v + ")"
}

func daemonCheck(socket string, st api.DaemonStatus, err error) Check {
	c := Check{Name: "daemon"}
	switch {
	case err == nil:
		c.Status = Pass
		c.Detail = fmt.Sprintf("bangerd %s answers on %s (pid %d, vmm %s/%s)", st.Version, socket, st.PID, st.VMM, st.Accel)
	case errors.Is(err, errSocketDenied):
		c.Status, c.Detail = Fail, socket+" exists but this user may not connect to it (permission denied)"
		c.Fix = "run banger as the user that owns bangerd, or with sudo"
	case errors.Is(err, rpc.ErrNoDaemon):
		c.Status, c.Detail = Warn, "not running (no answer on "+socket+"); banger starts it on demand"
		c.Fix = "nothing to do: the next banger command that needs it starts it (e.g. banger vm list)"
	default:
		c.Status, c.Detail = Fail, fmt.Sprintf("%s: %v", socket, err)
		c.Fix = "see the daemon log; restart it with: banger daemon stop"
	}
	return c
}

func dnsCheck(ctx context.Context, p probes, listen string, daemonErr error) Check {
	c := Check{Name: "dns"}
	switch {
	case listen == config.DNSOff:
		c.Status, c.Detail = Pass, "disabled (dns_listen = off); VMs have no <name>.vm names"
		return c
	case listen == "":
		listen = config.DefaultDNSListen
	}
	if daemonErr != nil {
		c.Status, c.Detail = Warn, "not checked: bangerd does not answer (it serves .vm on "+listen+")"
		c.Fix = "check again once bangerd runs"
		return c
	}
	resp, err := p.dnsQuery(ctx, listen, dnsProbeName)
	if err != nil {
		c.Status, c.Detail = Fail, fmt.Sprintf("no answer from %s: %v", listen, err)
		c.Fix = "see the daemon log; set dns_listen in config.toml to a free address and restart bangerd"
		return c
	}
	return dnsVerdict(c, listen, resp)
}

// dnsVerdict judges the answer to the probe query: banger's server is
// authoritative for .vm and says NXDOMAIN (or NOERROR) for the name.
func dnsVerdict(c Check, listen string, resp *mdns.Msg) Check {
	rcode := mdns.RcodeToString[resp.Rcode]
	switch {
	case resp.Authoritative && (resp.Rcode == mdns.RcodeNameError || resp.Rcode == mdns.RcodeSuccess):
		c.Status, c.Detail = Pass, fmt.Sprintf("%s answers for .vm (authoritative %s)", listen, rcode)
	default:
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s answered %s without authority for .vm: another DNS server listens there", listen, rcode)
		c.Fix = "set dns_listen in config.toml to a free address and restart bangerd"
	}
	return c
}

func diskCheck(p probes, stateDir string) Check {
	c := Check{Name: "disk"}
	dir := existingAncestor(stateDir)
	free, err := p.freeBytes(dir)
	if err != nil {
		c.Status, c.Detail = Warn, fmt.Sprintf("cannot tell free space under %s: %v", stateDir, err)
		return c
	}
	return diskVerdict(c, dir, free)
}

func diskVerdict(c Check, dir string, free uint64) Check {
	human := model.HumanBytes(int64(min(free, 1<<62)))
	switch {
	case free < diskFailBytes:
		c.Status, c.Detail = Fail, fmt.Sprintf("%s free under %s; an image alone needs about 2 GiB", human, dir)
		c.Fix = "free space there, or point BANGER_HOME at a roomier filesystem"
	case free < diskWarnBytes:
		c.Status, c.Detail = Warn, fmt.Sprintf("%s free under %s; images and VM disks grow past that quickly", human, dir)
		c.Fix = "free space there, or point BANGER_HOME at a roomier filesystem"
	default:
		c.Status, c.Detail = Pass, fmt.Sprintf("%s free under %s", human, dir)
	}
	return c
}
