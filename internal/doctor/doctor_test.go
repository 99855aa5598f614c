package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"banger/internal/api"
	"banger/internal/config"
	"banger/internal/paths"
	"banger/internal/rpc"
	"banger/internal/storage"
)

// fakeHost is a host for run: tools and devices that exist, and the
// answers of the daemon and DNS probes.
type fakeHost struct {
	tools     map[string]bool
	devices   map[string]bool
	kvm       bool
	dm        bool
	free      uint64
	daemonErr error
	dnsResp   *mdns.Msg
	dnsErr    error
	dnsAsked  bool
	// binDir holds real scripts: a tool path under it is found when the
	// file exists and its version is what the script prints.
	binDir string
}

func (f *fakeHost) probes() probes {
	return probes{
		kvm: func() (bool, string) {
			if f.kvm {
				return true, "/dev/kvm opens read-write and the cpu has vmx"
			}
			return false, "cpu has no vmx/svm and kvm_intel/kvm_amd are not loaded (paravirtual nesting)"
		},
		lookPath: func(name string) (string, error) {
			if f.underBinDir(name) {
				if _, err := os.Stat(name); err != nil {
					return "", err
				}
				return name, nil
			}
			if f.tools[filepath.Base(name)] {
				return "/usr/bin/" + filepath.Base(name), nil
			}
			return "", fmt.Errorf("%s: not found", name)
		},
		version: func(ctx context.Context, path string, args ...string) (string, error) {
			if f.underBinDir(path) {
				return toolVersion(ctx, path, args...)
			}
			switch name := filepath.Base(path); name {
			case "firecracker":
				return "Firecracker v1.7.0", nil
			case "jailer":
				return "Jailer v1.7.0", nil
			default:
				return name + " 1.0", nil
			}
		},
		charDevice: func(path string) error {
			if f.devices[path] {
				return nil
			}
			return os.ErrNotExist
		},
		dm: func(context.Context) (bool, string) {
			if f.dm {
				return true, "device-mapper with the snapshot target"
			}
			return false, "no /dev/mapper/control"
		},
		rootfs: func(context.Context, string) (storage.RootfsBackend, string) {
			return storage.RootfsSparse, "no reflinks"
		},
		freeBytes: func(string) (uint64, error) { return f.free, nil },
		daemon: func(context.Context, string) (api.DaemonStatus, error) {
			return api.DaemonStatus{PID: 42, Version: "dev", VMM: "qemu", Accel: "tcg"}, f.daemonErr
		},
		dnsQuery: func(context.Context, string, string) (*mdns.Msg, error) {
			f.dnsAsked = true
			return f.dnsResp, f.dnsErr
		},
	}
}

func (f *fakeHost) underBinDir(path string) bool {
	return f.binDir != "" && strings.HasPrefix(path, f.binDir+"/")
}

func allTools() map[string]bool {
	m := map[string]bool{}
	for _, t := range []string{"qemu-system-x86_64", "firecracker", "jailer", "losetup", "nft", "mkfs.ext4", "debugfs",
		"resize2fs", "e2fsck", "tune2fs", "qemu-img", "mmdebstrap", "debootstrap", "ssh"} {
		m[t] = true
	}
	return m
}

func nxdomain(authoritative bool) *mdns.Msg {
	m := new(mdns.Msg)
	m.Rcode = mdns.RcodeNameError
	m.Authoritative = authoritative
	return m
}

func statuses(checks []Check) map[string]Status {
	m := map[string]Status{}
	for _, c := range checks {
		m[c.Name] = c.Status
	}
	return m
}

// thisHost is the machine banger is developed on: /dev/kvm without
// vmx/svm, no Firecracker, no device-mapper, everything QEMU needs.
func thisHost() *fakeHost {
	tools := allTools()
	delete(tools, "firecracker")
	delete(tools, "jailer")
	return &fakeHost{
		tools:     tools,
		devices:   map[string]bool{"/dev/loop-control": true, "/dev/net/tun": true},
		free:      70 << 30,
		daemonErr: fmt.Errorf("%w: dial unix: no such file", rpc.ErrNoDaemon),
	}
}

func TestRun(t *testing.T) {
	layout := paths.FromHome(t.TempDir())
	tests := []struct {
		name   string
		host   func() *fakeHost
		vmm    string
		jailer bool
		want   map[string]Status
		failed bool
	}{
		{
			name: "this host, vmm auto",
			host: thisHost,
			vmm:  config.VMMAuto,
			want: map[string]Status{
				"kvm": Warn, "qemu": Pass, "firecracker": Warn, "jailer": Warn, "device-mapper": Warn,
				"loop devices": Pass, "tun": Pass, "nftables": Pass, "e2fsprogs": Pass, "qemu-img": Pass,
				"debootstrap": Pass, "ssh": Pass, "daemon": Warn, "dns": Warn, "disk": Pass,
			},
		},
		{
			name: "this host, vmm firecracker",
			host: thisHost,
			vmm:  config.VMMFirecracker,
			want: map[string]Status{
				"kvm": Fail, "qemu": Pass, "firecracker": Fail, "jailer": Warn, "device-mapper": Warn,
			},
			failed: true,
		},
		{
			name: "kvm host with everything and a daemon",
			host: func() *fakeHost {
				return &fakeHost{tools: allTools(), devices: map[string]bool{"/dev/loop-control": true, "/dev/net/tun": true},
					kvm: true, dm: true, free: 100 << 30, dnsResp: nxdomain(true)}
			},
			vmm: config.VMMAuto,
			want: map[string]Status{
				"kvm": Pass, "qemu": Pass, "firecracker": Pass, "jailer": Pass, "device-mapper": Pass,
				"daemon": Pass, "dns": Pass, "disk": Pass,
			},
		},
		{
			name: "kvm host without qemu picks firecracker",
			host: func() *fakeHost {
				f := &fakeHost{tools: allTools(), devices: map[string]bool{"/dev/loop-control": true, "/dev/net/tun": true},
					kvm: true, dm: true, free: 100 << 30, dnsResp: nxdomain(true)}
				delete(f.tools, "qemu-system-x86_64")
				return f
			},
			vmm:  config.VMMAuto,
			want: map[string]Status{"qemu": Warn, "firecracker": Pass},
		},
		{
			name: "kvm host, firecracker jailed, jailer and qemu missing",
			host: func() *fakeHost {
				f := &fakeHost{tools: allTools(), devices: map[string]bool{"/dev/loop-control": true, "/dev/net/tun": true},
					kvm: true, free: 100 << 30, dnsResp: nxdomain(true)}
				delete(f.tools, "jailer")
				delete(f.tools, "qemu-system-x86_64")
				return f
			},
			vmm:    config.VMMFirecracker,
			jailer: true,
			want:   map[string]Status{"kvm": Pass, "qemu": Warn, "firecracker": Pass, "jailer": Fail, "device-mapper": Warn},
			failed: true,
		},
		{
			name: "bare host",
			host: func() *fakeHost {
				return &fakeHost{tools: map[string]bool{}, free: 512 << 20, daemonErr: rpc.ErrNoDaemon}
			},
			vmm: config.VMMQEMU,
			want: map[string]Status{
				"kvm": Warn, "qemu": Fail, "firecracker": Warn, "loop devices": Warn, "tun": Fail, "nftables": Warn,
				"e2fsprogs": Fail, "qemu-img": Fail, "debootstrap": Fail, "ssh": Fail, "disk": Fail,
			},
			failed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default(layout)
			cfg.VMM = tt.vmm
			cfg.JailerEnabled = tt.jailer
			checks := run(t.Context(), Options{Layout: layout, Config: cfg}, tt.host().probes())
			if len(checks) != 15 {
				t.Errorf("got %d checks, want 15", len(checks))
			}
			got := statuses(checks)
			for name, want := range tt.want {
				if got[name] != want {
					t.Errorf("%s: got %s, want %s (%+v)", name, got[name], want, checks)
				}
			}
			if Failed(checks) != tt.failed {
				t.Errorf("Failed: got %v, want %v", Failed(checks), tt.failed)
			}
			for _, c := range checks {
				if c.Detail == "" {
					t.Errorf("%s: empty detail", c.Name)
				}
				if c.Status == Fail && c.Fix == "" {
					t.Errorf("%s: FAIL without a fix", c.Name)
				}
			}
		})
	}
}

func TestKVMCheckSaysWhy(t *testing.T) {
	const why = "cpu has no vmx/svm and kvm_intel/kvm_amd are not loaded (paravirtual nesting)"
	c := kvmCheck(config.VMMAuto, false, why)
	if c.Status != Warn || !strings.Contains(c.Detail, why) || !strings.Contains(c.Detail, "not usable") {
		t.Errorf("got %+v, want WARN naming the reason", c)
	}
}

func TestDiskVerdict(t *testing.T) {
	tests := []struct {
		free uint64
		want Status
	}{
		{0, Fail},
		{1<<30 - 1, Fail},
		{1 << 30, Warn},
		{5<<30 - 1, Warn},
		{5 << 30, Pass},
		{1 << 63, Pass},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.free), func(t *testing.T) {
			if got := diskVerdict(Check{Name: "disk"}, "/s", tt.free); got.Status != tt.want {
				t.Errorf("got %s (%s), want %s", got.Status, got.Detail, tt.want)
			}
		})
	}
}

func TestDaemonCheck(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Status
	}{
		{"answers", nil, Pass},
		{"not running", fmt.Errorf("%w: dial: no such file", rpc.ErrNoDaemon), Warn},
		{"permission denied", errSocketDenied, Fail},
		{"broken", errors.New("decode daemon.status reply: bad json"), Fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := daemonCheck("/run/bangerd.sock", api.DaemonStatus{}, tt.err); got.Status != tt.want {
				t.Errorf("got %s (%s), want %s", got.Status, got.Detail, tt.want)
			}
		})
	}
}

func TestDNSCheck(t *testing.T) {
	refused := new(mdns.Msg)
	refused.Rcode = mdns.RcodeRefused
	tests := []struct {
		name      string
		listen    string
		daemonErr error
		resp      *mdns.Msg
		respErr   error
		want      Status
		wantAsked bool
	}{
		{"off", config.DNSOff, nil, nil, nil, Pass, false},
		{"daemon down", "127.0.0.1:42069", rpc.ErrNoDaemon, nil, nil, Warn, false},
		{"authoritative nxdomain", "127.0.0.1:42069", nil, nxdomain(true), nil, Pass, true},
		{"someone else's server", "127.0.0.1:42069", nil, refused, nil, Fail, true},
		{"not authoritative", "127.0.0.1:42069", nil, nxdomain(false), nil, Fail, true},
		{"no answer", "127.0.0.1:42069", nil, nil, errors.New("no answer within 3s"), Fail, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeHost{dnsResp: tt.resp, dnsErr: tt.respErr}
			got := dnsCheck(t.Context(), f.probes(), tt.listen, tt.daemonErr)
			if got.Status != tt.want {
				t.Errorf("got %s (%s), want %s", got.Status, got.Detail, tt.want)
			}
			if f.dnsAsked != tt.wantAsked {
				t.Errorf("queried: got %v, want %v", f.dnsAsked, tt.wantAsked)
			}
		})
	}
}

// TestDNSQueryLoopback runs the real query against an in-process server
// on 127.0.0.1 that answers like banger's.
func TestDNSQueryLoopback(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		resp := new(mdns.Msg)
		resp.SetRcode(req, mdns.RcodeNameError)
		resp.Authoritative = true
		w.WriteMsg(resp)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	resp, err := dnsQuery(t.Context(), pc.LocalAddr().String(), dnsProbeName)
	if err != nil {
		t.Fatalf("dnsQuery: %v", err)
	}
	if got := dnsVerdict(Check{Name: "dns"}, pc.LocalAddr().String(), resp); got.Status != Pass {
		t.Errorf("got %s (%s), want PASS", got.Status, got.Detail)
	}
}

func TestToolVersion(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "tool")
	// Prints its version on stderr, like ssh -V.
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho '' >&2\necho 'tool 9.9 (test)' >&2\necho second >&2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := toolVersion(t.Context(), script, "-V")
	if err != nil || got != "tool 9.9 (test)" {
		t.Errorf("got %q, %v; want %q", got, err, "tool 9.9 (test)")
	}
	if _, err := toolVersion(t.Context(), filepath.Join(dir, "missing")); err == nil {
		t.Error("toolVersion of a missing binary: got nil error")
	}
}

func TestExistingAncestor(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ in, want string }{
		{dir, dir},
		{filepath.Join(dir, "a", "b"), dir},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := existingAncestor(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// versionScript writes an executable that prints out for --version, or
// fails silently when out is "".
func versionScript(t *testing.T, path, out string) {
	t.Helper()
	body := "#!/bin/sh\nexit 1\n"
	if out != "" {
		body = "#!/bin/sh\ncat <<'EOF'\n" + out + "\nEOF\n"
	}
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestFirecrackerVersions runs the firecracker and jailer checks on fake
// binaries that print a version, on a KVM host without QEMU: the qemu
// check then says whether vmm = "auto" would still pick Firecracker.
func TestFirecrackerVersions(t *testing.T) {
	const (
		fc17 = "Firecracker v1.7.0\n"
		jl17 = "Jailer v1.7.0"
		none = "-" // no binary
	)
	tests := []struct {
		name       string
		vmm        string
		jailer     bool
		fc, jl     string // what --version prints; "" fails silently
		wantFC     Status
		wantJailer Status
		wantQEMU   Status // FAIL: auto falls back to QEMU, which is missing
		fcDetail   string
		jlDetail   string
	}{
		{name: "supported pair", vmm: config.VMMAuto, fc: fc17 + "\n", jl: jl17,
			wantFC: Pass, wantJailer: Pass, wantQEMU: Warn, fcDetail: "(Firecracker v1.7.0)"},
		{name: "two-digit minor", vmm: config.VMMFirecracker, jailer: true, fc: "Firecracker v1.10.1", jl: "Jailer v1.10.1",
			wantFC: Pass, wantJailer: Pass, wantQEMU: Warn},
		{name: "too old, vmm firecracker", vmm: config.VMMFirecracker, fc: "Firecracker v1.4.0", jl: "Jailer v1.4.0",
			wantFC: Fail, wantJailer: Warn, wantQEMU: Warn,
			fcDetail: `(Firecracker v1.4.0) is older than 1.5.0, the oldest banger runs; bangerd will not start with vmm = "firecracker"`,
			jlDetail: "(Jailer v1.4.0) is older than 1.5.0"},
		{name: "too old, vmm auto", vmm: config.VMMAuto, fc: "Firecracker v1.4.0", jl: "Jailer v1.4.0",
			wantFC: Warn, wantJailer: Warn, wantQEMU: Fail, fcDetail: `older than 1.5.0, the oldest banger runs; vmm = "auto" will use QEMU`},
		{name: "too old, vmm qemu", vmm: config.VMMQEMU, fc: "Firecracker v1.4.9", jl: none,
			wantFC: Warn, wantJailer: Warn, wantQEMU: Fail, fcDetail: `vmm = "qemu" does not use it`, jlDetail: "not found"},
		{name: "unparsable, vmm auto", vmm: config.VMMAuto, fc: "Usage: firecracker [OPTIONS]", jl: jl17,
			wantFC: Warn, wantJailer: Pass, wantQEMU: Fail, fcDetail: `--version printed "Usage: firecracker [OPTIONS]", not a version banger can read; vmm = "auto" will use QEMU`},
		{name: "unparsable, vmm firecracker", vmm: config.VMMFirecracker, fc: "firecracker dev build", jl: jl17,
			wantFC: Fail, wantJailer: Pass, wantQEMU: Warn, fcDetail: `printed "firecracker dev build"`},
		{name: "version fails", vmm: config.VMMAuto, fc: "", jl: jl17,
			wantFC: Warn, wantJailer: Pass, wantQEMU: Fail, fcDetail: "cannot tell its version"},
		{name: "jailer differs, jailer off", vmm: config.VMMAuto, fc: fc17, jl: "Jailer v1.6.0",
			wantFC: Pass, wantJailer: Warn, wantQEMU: Warn,
			jlDetail: "jailer 1.6.0 (%s/jailer) and firecracker 1.7.0 (%s/firecracker) differ: Firecracker supports only a jailer of its own release; jailer_enabled = true would not work"},
		{name: "jailer differs, jailer on, vmm firecracker", vmm: config.VMMFirecracker, jailer: true, fc: fc17, jl: "Jailer v1.8.0",
			wantFC: Pass, wantJailer: Fail, wantQEMU: Warn, jlDetail: `differ: Firecracker supports only a jailer of its own release; bangerd will not start with vmm = "firecracker" and jailer_enabled = true`},
		{name: "jailer differs, jailer on, vmm auto", vmm: config.VMMAuto, jailer: true, fc: fc17, jl: "Jailer v1.6.0",
			wantFC: Pass, wantJailer: Warn, wantQEMU: Fail, jlDetail: `differ: Firecracker supports only a jailer of its own release; vmm = "auto" will use QEMU`},
		{name: "jailer too old, jailer on", vmm: config.VMMFirecracker, jailer: true, fc: "Firecracker v1.4.0", jl: "Jailer v1.4.0",
			wantFC: Fail, wantJailer: Fail, wantQEMU: Warn, jlDetail: "older than 1.5.0"},
		{name: "jailer missing, jailer on, vmm auto", vmm: config.VMMAuto, jailer: true, fc: fc17, jl: none,
			wantFC: Pass, wantJailer: Warn, wantQEMU: Fail, jlDetail: `not found; vmm = "auto" will use QEMU`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			layout := paths.FromHome(dir)
			cfg := config.Default(layout)
			cfg.VMM, cfg.JailerEnabled = tt.vmm, tt.jailer
			cfg.FirecrackerBin, cfg.JailerBin = filepath.Join(dir, "firecracker"), filepath.Join(dir, "jailer")
			versionScript(t, cfg.FirecrackerBin, tt.fc)
			if tt.jl != none {
				versionScript(t, cfg.JailerBin, tt.jl)
			}
			f := &fakeHost{tools: allTools(), devices: map[string]bool{"/dev/loop-control": true, "/dev/net/tun": true},
				kvm: true, dm: true, free: 100 << 30, dnsResp: nxdomain(true), binDir: dir}
			delete(f.tools, "qemu-system-x86_64")
			checks := run(t.Context(), Options{Layout: layout, Config: cfg}, f.probes())
			byName := map[string]Check{}
			for _, c := range checks {
				byName[c.Name] = c
			}
			for _, w := range []struct {
				name   string
				want   Status
				detail string
			}{
				{"firecracker", tt.wantFC, tt.fcDetail},
				{"jailer", tt.wantJailer, tt.jlDetail},
				{"qemu", tt.wantQEMU, ""},
			} {
				c := byName[w.name]
				if c.Status != w.want {
					t.Errorf("%s: got %s (%s), want %s", w.name, c.Status, c.Detail, w.want)
				}
				if want := strings.ReplaceAll(w.detail, "%s", dir); !strings.Contains(c.Detail, want) {
					t.Errorf("%s: got detail %q, want it to contain %q", w.name, c.Detail, want)
				}
				if c.Status != Pass && c.Fix == "" {
					t.Errorf("%s: %s without a fix", w.name, c.Status)
				}
				if strings.Contains(c.Fix, "\n") {
					t.Errorf("%s: got a fix of several lines %q, want one", w.name, c.Fix)
				}
			}
		})
	}
}
