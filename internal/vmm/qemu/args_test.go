package qemu

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/paths"
	"banger/internal/vmm"
)

func testSpec(dir string) vmm.Spec {
	return vmm.Spec{
		ID:        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Name:      "demo",
		VCPUs:     2,
		MemoryMiB: 2048,
		Kernel:    filepath.Join(dir, "vmlinuz"),
		Initrd:    filepath.Join(dir, "initrd.img"),
		Cmdline:   "console=ttyS0 root=/dev/vda rw",
		Disks: []vmm.Disk{
			{ID: "system", Path: filepath.Join(dir, "system.qcow2"), Format: "qcow2"},
			{ID: "work", Path: filepath.Join(dir, "work.ext4"), Format: "raw"},
		},
		TapDevice:   "tap-fc-1",
		MAC:         "02:ab:cd:ef:01:23",
		Dir:         dir,
		ConsoleLog:  filepath.Join(dir, "console.log"),
		AgentSocket: filepath.Join(dir, "agent.sock"),
	}
}

func TestArgsFull(t *testing.T) {
	spec := testSpec("/v/d")
	p := Paths{QMPSocket: "/v/d/qmp.sock", PIDFile: "/v/d/qemu.pid"}
	got := Args(spec, Accelerator{Name: AccelTCG, TSCKHz: 2596130}, p)
	want := []string{
		"-name", "guest=banger-demo,process=banger-demo",
		"-M", "microvm,x-option-roms=off,isa-serial=on,pit=on,pic=on,rtc=on,acpi=on",
		"-accel", "tcg,thread=multi", "-cpu", "max",
		"-smp", "2", "-m", "2048M",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-kernel", "/v/d/vmlinuz", "-initrd", "/v/d/initrd.img",
		"-append", "console=ttyS0 root=/dev/vda rw reboot=t tsc_early_khz=2596130",
		"-drive", "id=system,file=/v/d/system.qcow2,format=qcow2,if=none,cache=writeback,aio=threads,discard=unmap",
		"-device", "virtio-blk-device,drive=system",
		"-drive", "id=work,file=/v/d/work.ext4,format=raw,if=none,cache=writeback,aio=threads,discard=unmap",
		"-device", "virtio-blk-device,drive=work",
		"-netdev", "tap,id=net0,ifname=tap-fc-1,script=no,downscript=no",
		"-device", "virtio-net-device,netdev=net0,mac=02:ab:cd:ef:01:23",
		"-chardev", "file,id=console,path=/v/d/console.log,append=on",
		"-serial", "chardev:console",
		"-chardev", "socket,id=qmp,path=/v/d/qmp.sock,server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-device", "virtio-serial-device,id=agentbus",
		"-chardev", "socket,id=agent,path=/v/d/agent.sock,server=on,wait=off",
		"-device", "virtserialport,bus=agentbus.0,chardev=agent,name=banger.agent",
		"-daemonize", "-pidfile", "/v/d/qemu.pid",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got args\n%s\nwant\n%s", strings.Join(got, " "), strings.Join(want, " "))
	}
}

func TestArgsVariants(t *testing.T) {
	p := Paths{QMPSocket: "/v/d/qmp.sock", PIDFile: "/v/d/qemu.pid"}
	kvm := Accelerator{Name: AccelKVM, TSCKHz: 2000000}
	tcg := Accelerator{Name: AccelTCG}
	tests := []struct {
		name    string
		accel   Accelerator
		edit    func(*vmm.Spec)
		want    []string // consecutive arguments that must appear
		notWant string   // an argument that must not appear
	}{
		{name: "kvm", accel: kvm, want: []string{"-accel", "kvm", "-cpu", "host"}, notWant: "tcg,thread=multi"},
		{name: "tcg", accel: tcg, want: []string{"-accel", "tcg,thread=multi", "-cpu", "max"}, notWant: "host"},
		{
			name: "kvm guests get only the reboot mode", accel: kvm,
			want: []string{"-append", "console=ttyS0 root=/dev/vda rw reboot=t"},
		},
		{
			name: "tcg guest gets the tsc frequency", accel: Accelerator{Name: AccelTCG, TSCKHz: 3000000},
			want: []string{"-append", "console=ttyS0 root=/dev/vda rw reboot=t tsc_early_khz=3000000"},
		},
		{
			name: "cmdline tsc frequency wins", accel: Accelerator{Name: AccelTCG, TSCKHz: 3000000},
			edit: func(s *vmm.Spec) { s.Cmdline = "tsc_early_khz=1000 quiet" },
			want: []string{"-append", "tsc_early_khz=1000 quiet reboot=t"},
		},
		{
			name: "cmdline reboot mode wins", accel: kvm,
			edit: func(s *vmm.Spec) { s.Cmdline = "reboot=a quiet" },
			want: []string{"-append", "reboot=a quiet"},
		},
		{
			name: "unknown tsc frequency", accel: tcg,
			want: []string{"-append", "console=ttyS0 root=/dev/vda rw reboot=t"},
		},
		{name: "no initrd", accel: tcg, edit: func(s *vmm.Spec) { s.Initrd = "" }, notWant: "-initrd"},
		{name: "no agent", accel: tcg, edit: func(s *vmm.Spec) { s.AgentSocket = "" }, notWant: "virtio-serial-device,id=agentbus"},
		{name: "no tap", accel: tcg, edit: func(s *vmm.Spec) { s.TapDevice = "" }, notWant: "-netdev"},
		{name: "no console log", accel: tcg, edit: func(s *vmm.Spec) { s.ConsoleLog = "" }, want: []string{"-serial", "null"}},
		{
			name: "read-only disk", accel: tcg,
			edit: func(s *vmm.Spec) { s.Disks[1].ReadOnly = true },
			want: []string{"-drive", "id=work,file=/v/d/work.ext4,format=raw,if=none,cache=writeback,aio=threads,readonly=on"},
		},
		{
			name: "commas escaped", accel: tcg,
			edit: func(s *vmm.Spec) { s.Disks[0].Path = "/v/a,b.qcow2"; s.Name = "x,y" },
			want: []string{"-name", "guest=banger-x,,y,process=banger-x,,y"},
		},
		{
			name: "unnamed vm uses id", accel: tcg,
			edit: func(s *vmm.Spec) { s.Name = "" },
			want: []string{"-name", "guest=banger-0123456789ab,process=banger-0123456789ab"},
		},
		{
			name: "disk ids that qemu rejects", accel: tcg,
			edit: func(s *vmm.Spec) { s.Disks[0].ID = "1st disk"; s.Disks[1].ID = "" },
			want: []string{"-device", "virtio-blk-device,drive=disk0", "-drive"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec("/v/d")
			if tt.edit != nil {
				tt.edit(&spec)
			}
			got := Args(spec, tt.accel, p)
			if len(tt.want) > 0 && !containsRun(got, tt.want) {
				t.Errorf("got args %q, want them to contain %q", got, tt.want)
			}
			if tt.notWant != "" && slices.Contains(got, tt.notWant) {
				t.Errorf("got args %q, want no %q", got, tt.notWant)
			}
		})
	}
}

func containsRun(args, run []string) bool {
	for i := 0; i+len(run) <= len(args); i++ {
		if slices.Equal(args[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

func TestHostTSCKHz(t *testing.T) {
	tests := []struct {
		name    string
		sysfs   string
		cpuinfo string
		want    int
	}{
		{name: "sysfs", sysfs: "2496000\n", cpuinfo: "cpu MHz\t\t: 800.000\n", want: 2496000},
		{name: "cpuinfo", cpuinfo: "processor\t: 0\ncpu MHz\t\t: 2596.130\nprocessor\t: 1\ncpu MHz\t\t: 1.0\n", want: 2596130},
		{name: "bad sysfs falls back", sysfs: "n/a", cpuinfo: "cpu MHz : 3000.5\n", want: 3000500},
		{name: "nothing", want: 0},
		{name: "garbage", cpuinfo: "cpu MHz : fast\n", want: 0},
		{name: "absurd", cpuinfo: "cpu MHz : 1e12\n", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			sysfs, cpuinfo := filepath.Join(dir, "tsc_freq_khz"), filepath.Join(dir, "cpuinfo")
			if tt.sysfs != "" {
				os.WriteFile(sysfs, []byte(tt.sysfs), 0o644)
			}
			if tt.cpuinfo != "" {
				os.WriteFile(cpuinfo, []byte(tt.cpuinfo), 0o644)
			}
			if got := hostTSCKHz(sysfs, cpuinfo); got != tt.want {
				t.Errorf("got %d kHz, want %d", got, tt.want)
			}
		})
	}
}

func TestDriveIDs(t *testing.T) {
	tests := []struct {
		name string
		ids  []string
		want []string
	}{
		{name: "valid", ids: []string{"system", "work"}, want: []string{"system", "work"}},
		{name: "invalid", ids: []string{"", "9lives", "a b"}, want: []string{"disk0", "disk1", "disk2"}},
		{name: "duplicates", ids: []string{"x", "x"}, want: []string{"x", "disk1"}},
		{name: "fallback taken", ids: []string{"disk1", ""}, want: []string{"disk1", "disk1_"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disks := make([]vmm.Disk, len(tt.ids))
			for i, id := range tt.ids {
				disks[i].ID = id
			}
			if got := vmm.DiskIDs(disks, qemuID); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPathsFor(t *testing.T) {
	tests := []struct {
		name    string
		dir     string
		wantErr bool
	}{
		{name: "short", dir: "/var/lib/banger/vms/0123456789ab"},
		{name: "longest that fits", dir: "/" + strings.Repeat("d", paths.MaxSocketPath-len("/"+qmpSocketName)-1)},
		{name: "one byte too long", dir: "/" + strings.Repeat("d", paths.MaxSocketPath-len("/"+qmpSocketName))},
	}
	tests[2].wantErr = true
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PathsFor(tt.dir)
			if tt.wantErr {
				if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "shorter state directory") {
					t.Errorf("got err %v, want an invalid-argument error asking for a shorter directory", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got err %v, want nil", err)
			}
			if want := tt.dir + "/qmp.sock"; p.QMPSocket != want {
				t.Errorf("got qmp socket %q, want %q", p.QMPSocket, want)
			}
			if want := tt.dir + "/qemu.pid"; p.PIDFile != want {
				t.Errorf("got pid file %q, want %q", p.PIDFile, want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := testSpec(dir)
	for _, f := range []string{good.Kernel, good.Initrd, good.Disks[0].Path, good.Disks[1].Path} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		edit     func(*vmm.Spec)
		wantMsgs []string
		notFound bool
		invalid  bool
	}{
		{name: "valid"},
		{
			name:     "missing kernel",
			edit:     func(s *vmm.Spec) { s.Kernel = "/x/vmlinuz" },
			wantMsgs: []string{`kernel "/x/vmlinuz": no such file`},
			notFound: true,
		},
		{
			name:     "missing initrd and disk",
			edit:     func(s *vmm.Spec) { s.Initrd = "/x/initrd"; s.Disks[1].Path = "/x/work.ext4" },
			wantMsgs: []string{`initrd "/x/initrd": no such file`, `disk 1 (work) "/x/work.ext4": no such file`},
			notFound: true,
		},
		{
			name: "bad values reported together",
			edit: func(s *vmm.Spec) {
				s.VCPUs, s.MemoryMiB, s.Disks[0].Format, s.MAC = 0, 16, "vmdk", ""
			},
			wantMsgs: []string{"vcpus 0", "memory 16 MiB", `format "vmdk"`, "no guest mac"},
			invalid:  true,
		},
		{
			name:     "relative kernel",
			edit:     func(s *vmm.Spec) { s.Kernel = "vmlinuz" },
			wantMsgs: []string{`kernel "vmlinuz": not an absolute path`},
			invalid:  true,
		},
		{
			name:     "no disks",
			edit:     func(s *vmm.Spec) { s.Disks = nil },
			wantMsgs: []string{"needs a system disk"},
			invalid:  true,
		},
		{
			name:     "agent socket too long",
			edit:     func(s *vmm.Spec) { s.AgentSocket = "/" + strings.Repeat("a", 120) },
			wantMsgs: []string{"agent socket", "shorter state directory"},
			invalid:  true,
		},
		{
			name:     "missing vm directory",
			edit:     func(s *vmm.Spec) { s.Dir = filepath.Join(dir, "nope") },
			wantMsgs: []string{"no such directory"},
			notFound: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec(dir)
			if tt.edit != nil {
				tt.edit(&spec)
			}
			err := validate(spec)
			if len(tt.wantMsgs) == 0 {
				if err != nil {
					t.Fatalf("got err %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil error, want %q", tt.wantMsgs)
			}
			for _, m := range tt.wantMsgs {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("got err %q, want it to contain %q", err, m)
				}
			}
			if tt.notFound && !errdefs.IsNotFound(err) {
				t.Errorf("got err %v, want a not-found error", err)
			}
			if tt.invalid && !errdefs.IsInvalid(err) {
				t.Errorf("got err %v, want an invalid-argument error", err)
			}
		})
	}
}
