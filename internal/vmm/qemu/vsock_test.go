package qemu

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"banger/internal/vmm"
)

const testCID = 0xAC100005 // 172.16.0.5, as the VM service derives it

func TestArgsVsock(t *testing.T) {
	p := Paths{QMPSocket: "/v/d/qmp.sock", PIDFile: "/v/d/qemu.pid"}
	tests := []struct {
		name string
		cid  uint32
		want string // the vhost-vsock -device value, "" for none
	}{
		{name: "with vhost-vsock", cid: testCID, want: "vhost-vsock-device,id=vsock0,guest-cid=2886729733"},
		{name: "smallest guest cid", cid: 3, want: "vhost-vsock-device,id=vsock0,guest-cid=3"},
		{name: "without vhost-vsock", cid: 0, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec("/v/d")
			spec.VSockCID = tt.cid
			args := Args(spec, Accelerator{Name: AccelTCG}, p)
			var got []string
			for i, a := range args {
				if strings.HasPrefix(a, "vhost-vsock") {
					got = append(got, a)
					if args[i-1] != "-device" {
						t.Errorf("got %q after %q, want it after -device", a, args[i-1])
					}
				}
			}
			var want []string
			if tt.want != "" {
				want = []string{tt.want}
			}
			if !slices.Equal(got, want) {
				t.Errorf("got vsock devices %q, want %q", got, want)
			}
			// The virtio-serial port stays either way: old images and
			// hosts without vhost-vsock use it.
			if !slices.Contains(args, "virtserialport,bus=agentbus.0,chardev=agent,name=banger.agent") {
				t.Errorf("got args %q, want the virtio-serial agent port", args)
			}
			if cid, ok := guestCIDFromArgs(args); ok != (tt.cid != 0) || cid != tt.cid {
				t.Errorf("got guest cid %d, %v back from the args, want %d, %v", cid, ok, tt.cid, tt.cid != 0)
			}
		})
	}
}

func TestGuestCIDFromArgs(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		want   uint32
		wantOK bool
	}{
		{name: "device", args: []string{"-m", "1G", "-device", "vhost-vsock-device,id=vsock0,guest-cid=42", "-daemonize"}, want: 42, wantOK: true},
		{name: "cid first", args: []string{"-device", "vhost-vsock-device,guest-cid=7,id=v"}, want: 7, wantOK: true},
		{name: "no device", args: []string{"-device", "virtio-blk-device,drive=system"}},
		{name: "pci variant is not ours", args: []string{"-device", "vhost-vsock-pci,guest-cid=9"}},
		{name: "reserved cid", args: []string{"-device", "vhost-vsock-device,guest-cid=2"}},
		{name: "too big", args: []string{"-device", "vhost-vsock-device,guest-cid=4294967295"}},
		{name: "garbage", args: []string{"-device", "vhost-vsock-device,guest-cid=x"}},
		{name: "device last without value", args: []string{"-device"}},
		{name: "value without -device", args: []string{"-name", "vhost-vsock-device,guest-cid=5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := guestCIDFromArgs(tt.args)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %d, %v, want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func firstN(seq func(func(uint32) bool), n int) []uint32 {
	var out []uint32
	for cid := range seq {
		if len(out) == n {
			break
		}
		out = append(out, cid)
	}
	return out
}

func TestCIDCandidates(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name      string
		first     uint32
		wantFirst uint32 // 0: the spec's CID is not a guest CID and is skipped
	}{
		{name: "spec cid first", first: testCID, wantFirst: testCID},
		{name: "smallest guest cid", first: 3, wantFirst: 3},
		{name: "largest guest cid", first: math.MaxUint32 - 1, wantFirst: math.MaxUint32 - 1},
		{name: "no spec cid", first: 0},
		{name: "host cid", first: 2},
		{name: "any cid", first: math.MaxUint32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := firstN(cidCandidates(tt.first, id), 64)
			if len(got) != 64 {
				t.Fatalf("got %d candidates, want an endless sequence", len(got))
			}
			if tt.wantFirst != 0 && got[0] != tt.wantFirst {
				t.Errorf("got first candidate %d, want %d", got[0], tt.wantFirst)
			}
			seen := map[uint32]bool{}
			for i, cid := range got {
				if cid < minGuestCID || cid > maxGuestCID {
					t.Errorf("got candidate %d = %d, want a guest cid in [3, 2^32-2]", i, cid)
				}
				if seen[cid] {
					t.Errorf("got candidate %d = %d twice, want distinct candidates", i, cid)
				}
				seen[cid] = true
			}
			if again := firstN(cidCandidates(tt.first, id), 64); !slices.Equal(again, got) {
				t.Errorf("got another sequence for the same machine, want the same")
			}
		})
	}
	a := firstN(cidCandidates(testCID, "vm-a"), 4)
	b := firstN(cidCandidates(testCID, "vm-b"), 4)
	if a[0] != b[0] || slices.Equal(a[1:], b[1:]) {
		t.Errorf("got %v and %v, want the same spec cid first and then different sequences", a, b)
	}
}

// fakeProbe answers like the kernel for a host whose guests hold taken.
func fakeProbe(taken map[uint32]bool, calls *[]uint32) cidProbe {
	return func(cid uint32) error {
		*calls = append(*calls, cid)
		if taken[cid] {
			return fmt.Errorf("claim guest cid %d: %w", cid, unix.EADDRINUSE)
		}
		return nil
	}
}

func TestChooseCID(t *testing.T) {
	cands := func(cids ...uint32) func(func(uint32) bool) { return slices.Values(cids) }
	many := firstN(cidCandidates(0, "many"), 40)
	tests := []struct {
		name      string
		probe     func(calls *[]uint32) cidProbe
		cands     func(func(uint32) bool)
		skip      map[uint32]bool
		want      uint32
		wantErr   error
		wantCalls []uint32
	}{
		{
			name:  "first free",
			probe: func(c *[]uint32) cidProbe { return fakeProbe(nil, c) },
			cands: cands(10, 11), want: 10, wantCalls: []uint32{10},
		},
		{
			name:  "collision goes to the next candidate",
			probe: func(c *[]uint32) cidProbe { return fakeProbe(map[uint32]bool{10: true, 11: true}, c) },
			cands: cands(10, 11, 12, 13), want: 12, wantCalls: []uint32{10, 11, 12},
		},
		{
			name:  "cids tried before are skipped unasked",
			probe: func(c *[]uint32) cidProbe { return fakeProbe(nil, c) },
			cands: cands(10, 11), skip: map[uint32]bool{10: true}, want: 11, wantCalls: []uint32{11},
		},
		{
			name:  "all taken",
			probe: func(c *[]uint32) cidProbe { return fakeProbe(map[uint32]bool{10: true, 11: true}, c) },
			cands: cands(10, 11), wantErr: errNoFreeCID, wantCalls: []uint32{10, 11},
		},
		{
			name: "bounded search",
			probe: func(c *[]uint32) cidProbe {
				all := map[uint32]bool{}
				for _, cid := range many {
					all[cid] = true
				}
				return fakeProbe(all, c)
			},
			cands: slices.Values(many), wantErr: errNoFreeCID, wantCalls: many[:maxCIDProbes],
		},
		{
			name: "no vhost-vsock device",
			probe: func(c *[]uint32) cidProbe {
				return func(cid uint32) error {
					*c = append(*c, cid)
					return fmt.Errorf("open /dev/vhost-vsock: %w", unix.ENOENT)
				}
			},
			cands: cands(10, 11), wantErr: unix.ENOENT, wantCalls: []uint32{10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []uint32
			got, err := chooseCID(tt.probe(&calls), tt.cands, tt.skip)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("got %d, %v, want error %v", got, err, tt.wantErr)
				}
			} else if err != nil || got != tt.want {
				t.Errorf("got %d, %v, want %d", got, err, tt.want)
			}
			if !slices.Equal(calls, tt.wantCalls) {
				t.Errorf("got probes of %v, want %v", calls, tt.wantCalls)
			}
		})
	}
}

func TestVhostVsockUsable(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "vhost-vsock")
	if err := os.WriteFile(present, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		device    string
		want      bool
		wantInMsg string
	}{
		{name: "missing", device: filepath.Join(dir, "nope"), want: false, wantInMsg: "vhost_vsock module not loaded"},
		{name: "opens read-write", device: present, want: true, wantInMsg: "opens read-write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := vhostVsockUsable(tt.device)
			if got != tt.want || !strings.Contains(why, tt.wantInMsg) {
				t.Errorf("got %v (%q), want %v with a reason containing %q", got, why, tt.want, tt.wantInMsg)
			}
		})
	}
}

// TestProbeVhostCIDNoDevice: the real probe on a device that is not
// there says so with ENOENT, which Start takes as "no vsock here".
func TestProbeVhostCIDNoDevice(t *testing.T) {
	err := probeVhostCID(filepath.Join(t.TempDir(), "vhost-vsock"))(testCID)
	if !errors.Is(err, unix.ENOENT) {
		t.Errorf("got %v, want ENOENT", err)
	}
}

// vsockFixture is a start fixture whose fake QEMU records each launch's
// vsock device in launches and fails, and whose probe finds taken the
// CIDs in taken and, when launchedTaken, every CID a launch used.
type vsockFixture struct {
	d        *Driver
	spec     vmm.Spec
	launches string
	probes   []uint32
}

func newVsockFixture(t *testing.T, taken map[uint32]bool, launchedTaken bool) *vsockFixture {
	t.Helper()
	script := `dir="$(dirname "$0")"
dev=none
prev=
for a; do [ "$prev" = -device ] && case "$a" in vhost-vsock-device,*) dev="$a";; esac; prev="$a"; done
echo "$dev" >> "$dir/launches"
echo "qemu-system-x86_64: -device $dev: vhost-vsock: unable to set guest cid: Address already in use" >&2
exit 1
`
	d, spec := startFixture(t, script)
	f := &vsockFixture{d: d, spec: spec, launches: filepath.Join(filepath.Dir(d.binary), "launches")}
	spec.VSockCID = testCID
	f.spec = spec
	d.probeCID = func(cid uint32) error {
		f.probes = append(f.probes, cid)
		if taken[cid] || (launchedTaken && slices.Contains(f.launched(t), vsockDeviceArg(cid))) {
			return fmt.Errorf("claim guest cid %d: %w", cid, unix.EADDRINUSE)
		}
		return nil
	}
	return f
}

func (f *vsockFixture) launched(t *testing.T) []string {
	data, err := os.ReadFile(f.launches)
	if err != nil {
		return nil
	}
	return strings.Fields(string(data))
}

func TestStartVsock(t *testing.T) {
	second := firstN(cidCandidates(testCID, testSpec("").ID), 3)[1]
	third := firstN(cidCandidates(testCID, testSpec("").ID), 3)[2]
	tests := []struct {
		name          string
		taken         map[uint32]bool
		launchedTaken bool
		noDevice      bool
		noAgent       bool
		wantLaunches  []string
	}{
		{
			name:         "spec cid free",
			wantLaunches: []string{vsockDeviceArg(testCID)},
		},
		{
			name:         "spec cid taken: next candidate",
			taken:        map[uint32]bool{testCID: true},
			wantLaunches: []string{vsockDeviceArg(second)},
		},
		{
			// QEMU failed and the CID is taken now: someone took it
			// between the probe and the launch.
			name:          "cid taken during the launch: start again with the next",
			launchedTaken: true,
			wantLaunches:  []string{vsockDeviceArg(testCID), vsockDeviceArg(second), vsockDeviceArg(third)},
		},
		{
			name:         "no vhost-vsock: no device",
			noDevice:     true,
			wantLaunches: []string{"none"},
		},
		{
			name:         "no agent: no device",
			noAgent:      true,
			wantLaunches: []string{"none"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newVsockFixture(t, tt.taken, tt.launchedTaken)
			if tt.noDevice {
				f.d.probeCID = probeVhostCID(filepath.Join(t.TempDir(), "vhost-vsock"))
			}
			if tt.noAgent {
				f.spec.AgentSocket = ""
			}
			_, err := f.d.Start(t.Context(), f.spec)
			if err == nil || !strings.Contains(err.Error(), "unable to set guest cid") {
				t.Fatalf("got err %v, want the fake qemu's failure", err)
			}
			if got := f.launched(t); !slices.Equal(got, tt.wantLaunches) {
				t.Errorf("got launches with %q, want %q", got, tt.wantLaunches)
			}
			if tt.noAgent && len(f.probes) != 0 {
				t.Errorf("got probes of %v for a machine without an agent, want none", f.probes)
			}
		})
	}
}

// TestGuestCID reads the CID from the command line of a live process
// that stands in for QEMU, and only while it is the process named.
func TestGuestCID(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 300; :", "sh", "-device", vsockDeviceArg(4242), "-daemonize")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	st, err := vmm.ReadProcStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	plain := exec.Command("sleep", "300")
	if err := plain.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Process.Kill(); plain.Wait() })
	plainSt, err := vmm.ReadProcStat(plain.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		h      vmm.Handle
		want   uint32
		wantOK bool
	}{
		{name: "the process", h: vmm.Handle{PID: cmd.Process.Pid, StartTime: st.StartTime}, want: 4242, wantOK: true},
		{name: "another start time", h: vmm.Handle{PID: cmd.Process.Pid, StartTime: st.StartTime + 1}},
		{name: "no vsock device", h: vmm.Handle{PID: plain.Process.Pid, StartTime: plainSt.StartTime}},
		{name: "no process", h: vmm.Handle{PID: 999999999}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := GuestCID(tt.h)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %d, %v, want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
