package daemon

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"banger/internal/agent"
	"banger/internal/model"
	"banger/internal/vmm"
)

func TestAgentRouteOf(t *testing.T) {
	runtime := func(vmmName string) model.VMRuntime {
		return model.VMRuntime{VMM: vmmName, PID: 4242, PIDStartTime: 777, VSockPath: "/vms/x/agent.sock"}
	}
	tests := []struct {
		name      string
		rec       model.VMRecord
		cid       uint32 // what the VM's live QEMU says, 0 for none
		want      agentRoute
		wantAsked bool
	}{
		{
			name: "firecracker",
			rec:  model.VMRecord{Runtime: runtime("firecracker")},
			cid:  99,
			want: agentRoute{firecracker: "/vms/x/agent.sock"},
		},
		{
			name:      "qemu with vhost-vsock",
			rec:       model.VMRecord{Runtime: runtime("qemu")},
			cid:       99,
			want:      agentRoute{cid: 99, serial: "/vms/x/agent.sock"},
			wantAsked: true,
		},
		{
			name:      "qemu without vhost-vsock",
			rec:       model.VMRecord{Runtime: runtime("qemu")},
			want:      agentRoute{serial: "/vms/x/agent.sock"},
			wantAsked: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []vmm.Handle
			got := agentRouteOf(tt.rec, func(h vmm.Handle) (uint32, bool) {
				asked = append(asked, h)
				return tt.cid, tt.cid != 0
			})
			if got != tt.want {
				t.Errorf("got route %+v, want %+v", got, tt.want)
			}
			if !tt.wantAsked {
				if len(asked) != 0 {
					t.Errorf("got the cid looked up for %+v, want no lookup", asked)
				}
				return
			}
			want := vmm.Handle{Driver: "qemu", PID: 4242, StartTime: 777}
			if len(asked) != 1 || asked[0] != want {
				t.Errorf("got cid lookups %+v, want one for %+v", asked, want)
			}
		})
	}
}

// fakeDialers records the dials made and fails the vsock dial when
// vsockErr is set.
type fakeDialers struct {
	calls         []string
	vsockErr      error
	vsockDeadline time.Duration // how long the vsock dial was given
	cancelOnVsock context.CancelFunc
}

func testClient(t *testing.T) *agent.Client {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return agent.NewClient(a)
}

func (f *fakeDialers) dialers(t *testing.T) agentDialers {
	return agentDialers{
		vsock: func(ctx context.Context, cid, port uint32) (*agent.Client, error) {
			f.calls = append(f.calls, "vsock")
			if d, ok := ctx.Deadline(); ok {
				f.vsockDeadline = time.Until(d)
			}
			if port != agentVsockPort {
				t.Errorf("got vsock port %d, want %d", port, agentVsockPort)
			}
			if f.cancelOnVsock != nil {
				f.cancelOnVsock()
			}
			if f.vsockErr != nil {
				return nil, f.vsockErr
			}
			return testClient(t), nil
		},
		serial: func(ctx context.Context, path string) (*agent.Client, error) {
			f.calls = append(f.calls, "serial")
			return testClient(t), nil
		},
		firecracker: func(ctx context.Context, uds string, port uint32) (*agent.Client, error) {
			f.calls = append(f.calls, "firecracker")
			return testClient(t), nil
		},
	}
}

func TestAgentRouteDial(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	errRefused := errors.New("nothing listens on the guest port")
	qemuVsock := agentRoute{cid: 99, serial: "/vms/x/agent.sock"}
	tests := []struct {
		name      string
		route     agentRoute
		vsockErr  error
		down      vsockDown
		cancel    bool // the caller's context ends during the vsock dial
		wantCalls []string
		wantErr   bool
		wantDown  vsockDown
	}{
		{
			name:      "firecracker",
			route:     agentRoute{firecracker: "/vms/x/fc.vsock"},
			wantCalls: []string{"firecracker"},
		},
		{
			name:      "qemu without vsock",
			route:     agentRoute{serial: "/vms/x/agent.sock"},
			wantCalls: []string{"serial"},
		},
		{
			name:      "vsock answers",
			route:     qemuVsock,
			down:      vsockDown{cid: 99, until: now.Add(-time.Second)},
			wantCalls: []string{"vsock"},
		},
		{
			name:      "vsock fails: virtio-serial",
			route:     qemuVsock,
			vsockErr:  errRefused,
			wantCalls: []string{"vsock", "serial"},
			wantDown:  vsockDown{cid: 99, until: now.Add(agentVsockRetry)},
		},
		{
			name:      "vsock failed recently: straight to virtio-serial",
			route:     qemuVsock,
			down:      vsockDown{cid: 99, until: now.Add(time.Second)},
			wantCalls: []string{"serial"},
			wantDown:  vsockDown{cid: 99, until: now.Add(time.Second)},
		},
		{
			name:      "another cid failed: vsock is tried",
			route:     qemuVsock,
			down:      vsockDown{cid: 98, until: now.Add(time.Second)},
			wantCalls: []string{"vsock"},
		},
		{
			name:      "caller gone: no fallback",
			route:     qemuVsock,
			vsockErr:  context.Canceled,
			cancel:    true,
			wantCalls: []string{"vsock"},
			wantErr:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), agentTimeout)
			defer cancel()
			f := &fakeDialers{vsockErr: tt.vsockErr}
			if tt.cancel {
				f.cancelOnVsock = cancel
			}
			down := tt.down
			c, err := tt.route.dial(ctx, f.dialers(t), &down, func() time.Time { return now })
			if tt.wantErr {
				if err == nil {
					t.Errorf("got a client, want an error")
				}
			} else if err != nil || c == nil {
				t.Errorf("got err %v, want a client", err)
			}
			if !slices.Equal(f.calls, tt.wantCalls) {
				t.Errorf("got dials %q, want %q", f.calls, tt.wantCalls)
			}
			if !tt.cancel && down != tt.wantDown {
				t.Errorf("got vsock state %+v, want %+v", down, tt.wantDown)
			}
			if slices.Contains(f.calls, "vsock") && (f.vsockDeadline <= 0 || f.vsockDeadline > agentVsockDialTimeout) {
				t.Errorf("got a vsock dial of %v, want at most %v", f.vsockDeadline, agentVsockDialTimeout)
			}
		})
	}
}
