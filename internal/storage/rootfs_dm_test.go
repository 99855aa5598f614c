package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
)

func TestDMArgs(t *testing.T) {
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"attach read-only", losetupAttachArgs("/img/rootfs.ext4", true), []string{"--find", "--show", "--read-only", "/img/rootfs.ext4"}},
		{"attach read-write", losetupAttachArgs("/vm/cow", false), []string{"--find", "--show", "/vm/cow"}},
		{"detach", losetupDetachArgs("/dev/loop3"), []string{"--detach", "/dev/loop3"}},
		{"create", dmsetupCreateArgs("banger-abc", "0 8 snapshot /dev/loop0 /dev/loop1 P 8"), []string{"create", "banger-abc", "--table", "0 8 snapshot /dev/loop0 /dev/loop1 P 8"}},
		{"remove", dmsetupRemoveArgs("banger-abc"), []string{"remove", "banger-abc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !slices.Equal(tt.got, tt.want) {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestSnapshotTable(t *testing.T) {
	tests := []struct {
		name    string
		sectors int64
		origin  string
		cow     string
		want    string
	}{
		{"small", 8, "/dev/loop0", "/dev/loop1", "0 8 snapshot /dev/loop0 /dev/loop1 P 8"},
		{"2 GiB", 2 << 30 / 512, "/dev/loop10", "/dev/loop11", "0 4194304 snapshot /dev/loop10 /dev/loop11 P 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := snapshotTable(tt.sectors, tt.origin, tt.cow); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckDMName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"banger name", RootfsDMName("0123456789abcdef0123"), true},
		{"empty", "", false},
		{"slash", "a/b", false},
		{"space", "a b", false},
		{"newline", "a\nb", false},
		{"control", "control", false},
		{"dotdot", "..", false},
		{"too long", strings.Repeat("a", 128), false},
		{"longest", strings.Repeat("a", 127), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkDMName(tt.in)
			if got := err == nil; got != tt.ok {
				t.Fatalf("checkDMName(%q) = %v, want ok %v", tt.in, err, tt.ok)
			}
			if err != nil && !errdefs.IsInvalid(err) {
				t.Errorf("got %v, want an invalid-argument error", err)
			}
		})
	}
}

func TestRootfsDMName(t *testing.T) {
	tests := []struct{ id, want string }{
		{"0123456789abcdef0123456789abcdef", "banger-0123456789abcdef"},
		{"short", "banger-short"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if got := RootfsDMName(tt.id); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func toolErr(name, stderr string) error {
	return &hostexec.Error{Name: name, ExitCode: 1, Stderr: stderr, Err: errors.New("exit status 1")}
}

func TestToolErrno(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"busy", toolErr("dmsetup", "device-mapper: remove ioctl on banger-x  failed: Device or resource busy\nCommand failed."), unix.EBUSY},
		{"gone", toolErr("dmsetup", "device-mapper: remove ioctl on banger-x  failed: No such device or address"), unix.ENXIO},
		{"no driver", toolErr("dmsetup", "/dev/mapper/control: open failed: No such device"), unix.ENODEV},
		{"loop free", toolErr("losetup", "losetup: /dev/loop0: detach failed: No such device or address"), unix.ENXIO},
		{"other", toolErr("dmsetup", "Invalid argument"), 0},
		{"not a tool error", errors.New("Device or resource busy"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := toolErrno(tt.err); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// fakeHost records commands and answers them from a script.
type fakeHost struct {
	calls  []string
	answer func(call string) ([]byte, error)
	sleeps []time.Duration
}

func (f *fakeHost) ops(sysBlock string) devOps {
	return devOps{
		run: func(ctx context.Context, name string, args ...string) ([]byte, error) {
			call := name + " " + strings.Join(args, " ")
			f.calls = append(f.calls, call)
			if f.answer == nil {
				return nil, nil
			}
			return f.answer(call)
		},
		sleep: func(ctx context.Context, d time.Duration) error {
			f.sleeps = append(f.sleeps, d)
			return ctx.Err()
		},
		sysBlock: sysBlock,
	}
}

func TestRemoveDMRetriesWhileBusy(t *testing.T) {
	busy := toolErr("dmsetup", "device-mapper: remove ioctl on banger-x  failed: Device or resource busy")
	ms := time.Millisecond
	tests := []struct {
		name      string
		busyTimes int
		final     error // answer once no longer busy
		wantErr   bool
		wantCalls int
		wantSleep []time.Duration
	}{
		{"free at once", 0, nil, false, 1, nil},
		{"busy twice", 2, nil, false, 3, []time.Duration{50 * ms, 100 * ms}},
		{"already gone", 0, toolErr("dmsetup", "remove ioctl failed: No such device or address"), false, 1, nil},
		{"busy then gone", 1, toolErr("dmsetup", "No such device or address"), false, 2, []time.Duration{50 * ms}},
		{"other failure is not retried", 0, toolErr("dmsetup", "Permission denied"), true, 1, nil},
		{"busy forever", 100, nil, true, dmRemoveAttempts,
			[]time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second, time.Second, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			f := &fakeHost{answer: func(string) ([]byte, error) {
				n++
				if n <= tt.busyTimes {
					return nil, busy
				}
				return nil, tt.final
			}}
			err := f.ops(t.TempDir()).removeDM(t.Context(), "banger-x")
			if (err != nil) != tt.wantErr {
				t.Fatalf("removeDM: got %v, want error %v", err, tt.wantErr)
			}
			if len(f.calls) != tt.wantCalls {
				t.Errorf("got %d dmsetup calls, want %d", len(f.calls), tt.wantCalls)
			}
			if !slices.Equal(f.sleeps, tt.wantSleep) {
				t.Errorf("got sleeps %v, want %v", f.sleeps, tt.wantSleep)
			}
		})
	}
}

func TestRemoveDMStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f := &fakeHost{answer: func(string) ([]byte, error) { return nil, toolErr("dmsetup", "Device or resource busy") }}
	err := f.ops(t.TempDir()).removeDM(ctx, "banger-x")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if len(f.calls) != 1 {
		t.Errorf("got %d calls, want 1", len(f.calls))
	}
}

// fakeLoops makes a /sys/block tree with loop devices backed by files.
func fakeLoops(t *testing.T, backing map[string]string) string {
	t.Helper()
	sys := t.TempDir()
	for dev, file := range backing {
		dir := filepath.Join(sys, dev, "loop")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "backing_file"), []byte(file+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sys
}

// dmFixture is a base image and a COW file in a temp dir.
func dmFixture(t *testing.T) (base, cow string) {
	t.Helper()
	dir := t.TempDir()
	base = filepath.Join(dir, "rootfs.ext4")
	cow = filepath.Join(dir, "system.cow")
	if err := os.WriteFile(base, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cow, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return base, cow
}

func TestActivateRootfsDM(t *testing.T) {
	base, cow := dmFixture(t)
	attach := map[string]string{
		"losetup --find --show --read-only " + base: "/dev/loop7\n",
		"losetup --find --show " + cow:              "/dev/loop8\n",
	}
	tests := []struct {
		name      string
		failOn    string // prefix of the call that fails
		wantCalls []string
	}{
		{
			name: "success",
			wantCalls: []string{
				"losetup --find --show --read-only " + base,
				"losetup --find --show " + cow,
				"dmsetup create banger-x --table 0 16 snapshot /dev/loop7 /dev/loop8 P 8",
			},
		},
		{
			name:   "base loop fails",
			failOn: "losetup --find --show --read-only",
			wantCalls: []string{
				"losetup --find --show --read-only " + base,
			},
		},
		{
			name:   "cow loop fails",
			failOn: "losetup --find --show " + cow,
			wantCalls: []string{
				"losetup --find --show --read-only " + base,
				"losetup --find --show " + cow,
				"losetup --detach /dev/loop7",
			},
		},
		{
			name:   "dmsetup create fails",
			failOn: "dmsetup create",
			wantCalls: []string{
				"losetup --find --show --read-only " + base,
				"losetup --find --show " + cow,
				"dmsetup create banger-x --table 0 16 snapshot /dev/loop7 /dev/loop8 P 8",
				"dmsetup remove banger-x",
				"losetup --detach /dev/loop8",
				"losetup --detach /dev/loop7",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := fakeLoops(t, map[string]string{"loop7": base, "loop8": cow})
			f := &fakeHost{answer: func(call string) ([]byte, error) {
				if tt.failOn != "" && strings.HasPrefix(call, tt.failOn) {
					return nil, toolErr("x", "Invalid argument")
				}
				if strings.HasPrefix(call, "dmsetup remove") {
					return nil, toolErr("dmsetup", "No such device or address")
				}
				return []byte(attach[call]), nil
			}}
			r, err := activateRootfs(t.Context(), f.ops(sys), Rootfs{Backend: RootfsDMSnapshot, Base: base, Path: cow, DMName: "banger-x"})
			if got, want := err != nil, tt.failOn != ""; got != want {
				t.Fatalf("activateRootfs: got error %v, want error %v", err, want)
			}
			if !slices.Equal(f.calls, tt.wantCalls) {
				t.Errorf("got calls\n%s\nwant\n%s", strings.Join(f.calls, "\n"), strings.Join(tt.wantCalls, "\n"))
			}
			if err != nil {
				return
			}
			want := Rootfs{Backend: RootfsDMSnapshot, Base: base, Path: cow, Device: "/dev/mapper/banger-x", DMName: "banger-x", BaseLoop: "/dev/loop7", COWLoop: "/dev/loop8"}
			if r != want {
				t.Errorf("got %+v, want %+v", r, want)
			}
		})
	}
}

func TestDeactivateRootfsDM(t *testing.T) {
	base, cow := dmFixture(t)
	r := Rootfs{Backend: RootfsDMSnapshot, Base: base, Path: cow, Device: "/dev/mapper/banger-x", DMName: "banger-x", BaseLoop: "/dev/loop7", COWLoop: "/dev/loop8"}
	tests := []struct {
		name      string
		loops     map[string]string
		dmErr     error
		wantErr   bool
		wantCalls []string
	}{
		{
			name:  "everything attached",
			loops: map[string]string{"loop7": base, "loop8": cow},
			wantCalls: []string{
				"dmsetup remove banger-x", "losetup --detach /dev/loop8", "losetup --detach /dev/loop7",
			},
		},
		{
			name:      "already torn down",
			loops:     nil,
			dmErr:     toolErr("dmsetup", "No such device or address"),
			wantCalls: []string{"dmsetup remove banger-x"},
		},
		{
			name:  "cow file deleted meanwhile",
			loops: map[string]string{"loop7": base, "loop8": cow + " (deleted)"},
			wantCalls: []string{
				"dmsetup remove banger-x", "losetup --detach /dev/loop8", "losetup --detach /dev/loop7",
			},
		},
		{
			name:      "loop reused by someone else is left alone",
			loops:     map[string]string{"loop7": "/home/u/other.img", "loop8": cow},
			wantErr:   true,
			wantCalls: []string{"dmsetup remove banger-x", "losetup --detach /dev/loop8"},
		},
		{
			name:      "device-mapper removal fails: loops kept",
			loops:     map[string]string{"loop7": base, "loop8": cow},
			dmErr:     toolErr("dmsetup", "Permission denied"),
			wantErr:   true,
			wantCalls: []string{"dmsetup remove banger-x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeHost{answer: func(call string) ([]byte, error) {
				if strings.HasPrefix(call, "dmsetup") {
					return nil, tt.dmErr
				}
				return nil, nil
			}}
			err := deactivateRootfs(t.Context(), f.ops(fakeLoops(t, tt.loops)), r)
			if (err != nil) != tt.wantErr {
				t.Fatalf("deactivateRootfs: got %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(f.calls, tt.wantCalls) {
				t.Errorf("got calls\n%s\nwant\n%s", strings.Join(f.calls, "\n"), strings.Join(tt.wantCalls, "\n"))
			}
		})
	}
}

func TestCreateRootfsDMRollsBackCOWFile(t *testing.T) {
	base, _ := dmFixture(t)
	cow := filepath.Join(t.TempDir(), "system.cow")
	f := &fakeHost{answer: func(call string) ([]byte, error) {
		if strings.HasPrefix(call, "losetup --find") {
			return nil, toolErr("losetup", "cannot find an unused loop device")
		}
		return nil, nil
	}}
	_, err := createRootfs(t.Context(), f.ops(t.TempDir()), RootfsRequest{Backend: RootfsDMSnapshot, Base: base, Path: cow, DMName: "banger-x", Size: 1 << 20})
	if err == nil {
		t.Fatal("createRootfs: got nil error, want the losetup failure")
	}
	if _, statErr := os.Stat(cow); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("cow file after failed create: got %v, want it removed", statErr)
	}
}

func TestCreateRootfsDMSizesCOWFile(t *testing.T) {
	base, _ := dmFixture(t)
	cow := filepath.Join(t.TempDir(), "system.cow")
	f := &fakeHost{answer: func(call string) ([]byte, error) {
		if strings.Contains(call, "--read-only") {
			return []byte("/dev/loop1\n"), nil
		}
		if strings.HasPrefix(call, "losetup") {
			return []byte("/dev/loop2\n"), nil
		}
		return nil, nil
	}}
	const size = 64 << 20
	r, err := createRootfs(t.Context(), f.ops(t.TempDir()), RootfsRequest{Backend: RootfsDMSnapshot, Base: base, Path: cow, DMName: "banger-x", Size: size})
	if err != nil {
		t.Fatalf("createRootfs: %v", err)
	}
	st, err := os.Stat(cow)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Size(), cowFileSize(size); got != want {
		t.Errorf("cow file size: got %d, want %d", got, want)
	}
	if r.Device != "/dev/mapper/banger-x" || r.BaseLoop != "/dev/loop1" || r.COWLoop != "/dev/loop2" {
		t.Errorf("got %+v, want device /dev/mapper/banger-x over /dev/loop1 and /dev/loop2", r)
	}
}

func TestDeviceMapperAvailable(t *testing.T) {
	tests := []struct {
		name       string
		control    bool
		misc       string
		dmsetup    bool
		targets    string
		targetsErr error
		loaded     bool
		modulesDep string
		want       bool
		wantReason string
		wantRun    bool
	}{
		{name: "no control node", misc: "236 device-mapper\n", dmsetup: true, targets: "snapshot v1\n",
			wantReason: "no ", wantRun: false},
		{name: "no driver", control: true, misc: "200 tun\n237 loop-control\n", dmsetup: true,
			wantReason: "no device-mapper driver"},
		{name: "no dmsetup", control: true, misc: "236 device-mapper\n",
			wantReason: "dmsetup not found"},
		{name: "targets fails", control: true, misc: "236 device-mapper\n", dmsetup: true, targetsErr: toolErr("dmsetup", "boom"),
			wantReason: "dmsetup targets", wantRun: true},
		{name: "snapshot target", control: true, misc: "236 device-mapper\n", dmsetup: true, targets: "striped v1.6.0\nsnapshot v1.16.0\nlinear v1.4.0\n",
			want: true, wantReason: "snapshot target", wantRun: true},
		{name: "module loaded", control: true, misc: "236 device-mapper\n", dmsetup: true, targets: "linear v1.4.0\n", loaded: true,
			want: true, wantReason: "loaded", wantRun: true},
		{name: "module on demand", control: true, misc: "236 device-mapper\n", dmsetup: true, targets: "linear v1.4.0\n",
			modulesDep: "kernel/drivers/md/dm-snapshot.ko.xz: kernel/drivers/md/dm-bufio.ko.xz\n",
			want:       true, wantReason: "on demand", wantRun: true},
		{name: "no snapshot target", control: true, misc: "236 device-mapper\n", dmsetup: true, targets: "linear v1.4.0\n",
			modulesDep: "kernel/drivers/md/dm-mirror.ko:\n", wantReason: "no snapshot target", wantRun: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := dmProbe{
				Control:    filepath.Join(dir, "control"),
				ProcMisc:   filepath.Join(dir, "misc"),
				SysModule:  filepath.Join(dir, "module"),
				ModulesDir: filepath.Join(dir, "lib"),
			}
			write := func(p, s string) {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.control {
				write(p.Control, "")
			}
			write(p.ProcMisc, tt.misc)
			if tt.loaded {
				write(filepath.Join(p.SysModule, "dm_snapshot", "refcnt"), "0")
			}
			if tt.modulesDep != "" {
				write(filepath.Join(p.ModulesDir, "modules.dep"), tt.modulesDep)
			}
			p.LookPath = func(name string) (string, error) {
				if !tt.dmsetup {
					return "", errors.New(name + " not found in PATH: install the dmsetup package")
				}
				return "/usr/sbin/" + name, nil
			}
			ran := false
			p.Run = func(ctx context.Context, name string, args ...string) ([]byte, error) {
				ran = true
				return []byte(tt.targets), tt.targetsErr
			}
			got, reason := deviceMapperAvailable(t.Context(), p)
			if got != tt.want {
				t.Errorf("got available %v (%s), want %v", got, reason, tt.want)
			}
			if !strings.Contains(reason, tt.wantReason) {
				t.Errorf("got reason %q, want it to contain %q", reason, tt.wantReason)
			}
			if ran != tt.wantRun {
				t.Errorf("dmsetup ran: got %v, want %v", ran, tt.wantRun)
			}
		})
	}
}
