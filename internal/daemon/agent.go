package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"banger/internal/agent"
	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/rpc"
	"banger/internal/vmm"
	"banger/internal/vmm/qemu"
	"banger/internal/workspace"
)

// agentTimeout bounds one call to a guest agent, dial included.
const agentTimeout = 3 * time.Second

// agentVsockPort is where banger-agent listens on vsock (the guest
// side's DefaultVsockPort).
const agentVsockPort = 1024

// agentVsockDialTimeout bounds a vsock dial to a QEMU guest before the
// daemon falls back to its virtio-serial port: a guest that answers
// does so in milliseconds, one without a vsock driver not at all.
const agentVsockDialTimeout = time.Second

// agentVsockRetry is how long the daemon goes straight to the
// virtio-serial port of a VM after a vsock dial to it failed.
const agentVsockRetry = 30 * time.Second

// agentLocks serialises calls to each VM's agent: QEMU's chardev socket
// serves one client at a time, so a second dial would wait anyway. With
// the lock goes what the daemon learnt about the VM's vsock.
type agentLocks struct{ m sync.Map } // VM id -> *agentLock

// agentLock is one VM's lock and the vsock state it guards.
type agentLock struct {
	mu sync.Mutex
	// vsockDown names a guest CID whose dial failed and when to try it
	// again; guarded by mu.
	vsockDown vsockDown
}

func (l *agentLocks) lock(id string) (*agentLock, func()) {
	v, _ := l.m.LoadOrStore(id, new(agentLock))
	al := v.(*agentLock)
	al.mu.Lock()
	return al, al.mu.Unlock
}

// withAgent runs fn with a client connected to the agent of the running
// VM ref, within agentTimeout.
func (d *Daemon) withAgent(ctx context.Context, ref string, fn func(ctx context.Context, rec model.VMRecord, c *agent.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	return d.withAgentConn(ctx, ref, fn)
}

// withAgentConn is withAgent with ctx's own deadline, if any: the dial
// and each plain call still wait at most agentTimeout.
func (d *Daemon) withAgentConn(ctx context.Context, ref string, fn func(ctx context.Context, rec model.VMRecord, c *agent.Client) error) error {
	rec, err := d.vms.Get(ctx, ref)
	if err != nil {
		return err
	}
	if rec.State != model.VMStateRunning {
		return errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("vm %q is %s, not running; start it with banger vm start %s", rec.Name, rec.State, rec.Name))
	}
	if rec.Runtime.VSockPath == "" {
		return errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("vm %q was started without an agent channel; restart it (banger vm restart %s)", rec.Name, rec.Name))
	}
	al, unlock := d.agentLocks.lock(rec.ID)
	defer unlock()
	dialCtx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	route := agentRouteOf(rec, qemu.GuestCID)
	c, err := route.dial(dialCtx, defaultAgentDialers, &al.vsockDown, time.Now)
	if err != nil {
		return fmt.Errorf("vm %q: %w", rec.Name, err)
	}
	defer c.Close()
	if err := fn(ctx, rec, c); err != nil {
		var remote *agent.RemoteError
		switch {
		case errors.Is(err, agent.ErrNoAnswer):
			return errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("vm %q: the banger agent did not answer within %s: the guest may still be booting, or its image predates banger-agent (rebuild it: banger image build --force)", rec.Name, agentTimeout))
		case errors.As(err, &remote) && strings.Contains(remote.Message, "unknown method"):
			return errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("vm %q: its banger agent is too old for %s (rebuild the image: banger image build --force)", rec.Name, remote.Method))
		}
		return fmt.Errorf("vm %q: %w", rec.Name, err)
	}
	return nil
}

// agentRoute is how the daemon reaches a VM's agent.
type agentRoute struct {
	// firecracker is Firecracker's vsock unix socket, the only way to a
	// Firecracker guest's agent.
	firecracker string
	// cid is the vsock context id of a QEMU guest with vhost-vsock, 0
	// for none; serial is its virtio-serial chardev socket, the way
	// without vsock and the fallback when vsock does not answer.
	cid    uint32
	serial string
}

// agentRouteOf returns the route to the agent of the running VM rec.
// guestCID finds a QEMU guest's vsock CID from its live process (see
// qemu.GuestCID), so a CID is only ever dialled while the VM's own QEMU
// holds it.
func agentRouteOf(rec model.VMRecord, guestCID func(vmm.Handle) (uint32, bool)) agentRoute {
	if rec.Runtime.VMM == "firecracker" {
		return agentRoute{firecracker: rec.Runtime.VSockPath}
	}
	r := agentRoute{serial: rec.Runtime.VSockPath}
	h := vmm.Handle{Driver: rec.Runtime.VMM, PID: rec.Runtime.PID, StartTime: rec.Runtime.PIDStartTime}
	if cid, ok := guestCID(h); ok {
		r.cid = cid
	}
	return r
}

// agentDialers are the ways to connect to an agent.
type agentDialers struct {
	vsock       func(ctx context.Context, cid, port uint32) (*agent.Client, error)
	serial      func(ctx context.Context, socketPath string) (*agent.Client, error)
	firecracker func(ctx context.Context, udsPath string, port uint32) (*agent.Client, error)
}

var defaultAgentDialers = agentDialers{
	vsock:       agent.DialVsock,
	serial:      agent.Dial,
	firecracker: agent.DialFirecrackerVsock,
}

// vsockDown remembers a vsock dial that failed.
type vsockDown struct {
	cid   uint32
	until time.Time
}

// dial connects along r: through Firecracker's socket for a Firecracker
// guest; for a QEMU guest over vsock when it has a CID, within
// agentVsockDialTimeout, else or on failure through the virtio-serial
// socket. A vsock that fails (an image whose agent predates vsock, a
// guest still booting or without a vsock driver) is not tried again for
// the same CID before agentVsockRetry has passed; down holds that.
func (r agentRoute) dial(ctx context.Context, ds agentDialers, down *vsockDown, now func() time.Time) (*agent.Client, error) {
	if r.firecracker != "" {
		return ds.firecracker(ctx, r.firecracker, agentVsockPort)
	}
	if r.cid != 0 && (down.cid != r.cid || !now().Before(down.until)) {
		vctx, cancel := context.WithTimeout(ctx, agentVsockDialTimeout)
		c, err := ds.vsock(vctx, r.cid, agentVsockPort)
		cancel()
		if err == nil {
			*down = vsockDown{}
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		*down = vsockDown{cid: r.cid, until: now().Add(agentVsockRetry)}
	}
	return ds.serial(ctx, r.serial)
}

// registerAgent wires the methods answered by guest agents.
func (d *Daemon) registerAgent(srv *rpc.Server) {
	rpc.Register(srv, api.MethodVMHealth, func(ctx context.Context, r api.Ref) (api.VMHealth, error) {
		var out api.VMHealth
		err := d.withAgent(ctx, r.Ref, func(ctx context.Context, rec model.VMRecord, c *agent.Client) error {
			h, err := c.Health(ctx)
			out = api.VMHealth{Name: rec.Name, Health: h}
			return err
		})
		return out, err
	})
	rpc.Register(srv, api.MethodVMPing, func(ctx context.Context, r api.Ref) (api.VMPing, error) {
		var out api.VMPing
		err := d.withAgent(ctx, r.Ref, func(ctx context.Context, rec model.VMRecord, c *agent.Client) error {
			rtt, err := c.Ping(ctx)
			out = api.VMPing{Name: rec.Name, RTTMicros: rtt.Microseconds()}
			return err
		})
		return out, err
	})
	rpc.RegisterStream(srv, api.MethodVMWorkspaceCopy, d.workspaceCopy)
	rpc.Register(srv, api.MethodVMPorts, func(ctx context.Context, r api.Ref) (api.VMPorts, error) {
		var out api.VMPorts
		err := d.withAgent(ctx, r.Ref, func(ctx context.Context, rec model.VMRecord, c *agent.Client) error {
			ls, err := c.Ports(ctx)
			if err != nil {
				return err
			}
			out = api.VMPorts{Name: rec.Name, Ports: d.httpProbes.links(ctx, rec, ls)}
			return nil
		})
		return out, err
	})
}

// workspaceCopy extracts the stream of a workspace prepare into the
// guest through the agent: no SSH, no encryption, one process. The
// stream is read only once the agent started the extraction (rpc
// Ready), so a client told the agent is unavailable can send it over
// SSH instead.
func (d *Daemon) workspaceCopy(ctx context.Context, p api.WorkspaceCopy, body io.Reader) (api.Empty, error) {
	script, err := workspace.ExtractCommand(p.GuestPath)
	if err != nil {
		return api.Empty{}, err
	}
	err = d.withAgentConn(ctx, p.Ref, func(ctx context.Context, rec model.VMRecord, c *agent.Client) error {
		res, err := c.Exec(ctx, []string{"sh", "-c", script}, body, rpc.CallFrom(ctx).Ready)
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("extract the workspace into %s: exit status %d: %s", p.GuestPath, res.ExitCode, lastLine(res.Stderr))
		}
		return nil
	})
	return api.Empty{}, err
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// httpProbes remembers, per VM, which listeners answered HTTP: probing
// a service costs it a connection (under software emulation sshd takes
// a few hundred milliseconds to greet one), and a listener, known by its
// process, address and port, does not change protocol.
type httpProbes struct {
	mu   sync.Mutex
	seen map[string]map[string]bool // VM id -> listener key -> is HTTP
}

// links gives each listener the host can reach its NAME.vm:PORT
// endpoint, and an http:// link when it answers HTTP from the host.
// Listeners not seen before are probed in parallel, each within the
// probe's own short deadline; the VM's memory then holds exactly the
// current listeners.
func (p *httpProbes) links(ctx context.Context, rec model.VMRecord, ls []agent.Listener) []api.Port {
	p.mu.Lock()
	known := p.seen[rec.ID]
	p.mu.Unlock()
	now := make(map[string]bool, len(ls))
	out := make([]api.Port, len(ls))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, l := range ls {
		out[i].Listener = l
		if l.Loopback() {
			continue
		}
		port := strconv.Itoa(l.Port)
		out[i].Endpoint = rec.Name + ".vm:" + port
		if l.Proto != "tcp" {
			continue
		}
		key := fmt.Sprintf("%d|%s|%d", l.PID, l.Address, l.Port)
		if isHTTP, ok := known[key]; ok {
			now[key] = isHTTP
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			probeCtx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			isHTTP := agent.ProbeHTTP(probeCtx, net.JoinHostPort(rec.Runtime.GuestIP, port), rec.Name+".vm")
			mu.Lock()
			now[key] = isHTTP
			mu.Unlock()
		}()
	}
	wg.Wait()
	for i := range out {
		l := out[i].Listener
		if now[fmt.Sprintf("%d|%s|%d", l.PID, l.Address, l.Port)] && l.Proto == "tcp" && out[i].Endpoint != "" {
			out[i].URL = "http://" + out[i].Endpoint + "/"
		}
	}
	p.mu.Lock()
	if p.seen == nil {
		p.seen = map[string]map[string]bool{}
	}
	p.seen[rec.ID] = now
	p.mu.Unlock()
	return out
}
