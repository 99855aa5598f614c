// Package doctor checks whether this host can run banger: KVM, the VMM
// binaries, device-mapper and loop devices, TUN, nftables, the disk and
// image tools, ssh, the daemon's socket and DNS listener, free disk. Each
// check is one line with a status and, when not passing, the fix. It only
// looks: it changes nothing on the host beyond a temp file that probes
// reflink support. The CLI's doctor command imports it.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"banger/internal/api"
	"banger/internal/model"
	"banger/internal/paths"
	"banger/internal/rpc"
	"banger/internal/storage"
	"banger/internal/vmm"
)

// Status is the outcome of one check.
type Status string

// The statuses, from good to bad.
const (
	Pass Status = "PASS"
	Warn Status = "WARN" // banger works, with less (slower, fewer features)
	Fail Status = "FAIL" // banger cannot work until it is fixed
)

// Check is the result of one check. Fix says what to do when Status is
// not Pass.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Options says which banger installation to check.
type Options struct {
	Layout paths.Layout
	Config model.DaemonConfig
}

// Run runs every check, in a fixed order.
func Run(ctx context.Context, o Options) []Check {
	return run(ctx, o, hostProbes())
}

// Failed reports whether any check failed.
func Failed(checks []Check) bool {
	for _, c := range checks {
		if c.Status == Fail {
			return true
		}
	}
	return false
}

// probes is everything the checks ask of the host, so tests can fake it.
type probes struct {
	kvm func() (bool, string)
	// lookPath finds a tool on PATH or in the sbin directories.
	lookPath func(name string) (string, error)
	// version runs a tool's version command and returns the first line
	// it printed on stdout or stderr.
	version func(ctx context.Context, path string, args ...string) (string, error)
	// charDevice fails unless path is a character device.
	charDevice func(path string) error
	dm         func(ctx context.Context) (bool, string)
	rootfs     func(ctx context.Context, dir string) (storage.RootfsBackend, string)
	// freeBytes is the space unprivileged users may still write on the
	// filesystem holding path.
	freeBytes func(path string) (uint64, error)
	daemon    func(ctx context.Context, socket string) (api.DaemonStatus, error)
	dnsQuery  func(ctx context.Context, addr, name string) (*mdns.Msg, error)
}

func hostProbes() probes {
	return probes{
		kvm:        vmm.KVMUsable,
		lookPath:   lookPath,
		version:    toolVersion,
		charDevice: charDevice,
		dm:         storage.DeviceMapperAvailable,
		rootfs:     storage.ChooseRootfsBackend,
		freeBytes:  freeBytes,
		daemon:     daemonStatus,
		dnsQuery:   dnsQuery,
	}
}

// sbinDirs are searched after PATH: a user's PATH often lacks them, yet
// the daemon, running as root, finds mkfs.ext4 and nft there.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

func lookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil || strings.Contains(name, "/") {
		return p, err
	}
	for _, dir := range sbinDirs {
		candidate := filepath.Join(dir, name)
		if st, statErr := os.Stat(candidate); statErr == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return candidate, nil
		}
	}
	return "", err
}

// probeTimeout bounds each command, socket call and DNS query.
const probeTimeout = 3 * time.Second

// toolVersion runs a version command. It does not go through hostexec,
// which keeps stderr only for errors: ssh -V and mke2fs -V print their
// version on stderr.
func toolVersion(ctx context.Context, path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if line := firstLine(string(out)); line != "" {
		return line, nil
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", path, strings.Join(args, " "), err)
	}
	return "", fmt.Errorf("%s %s printed nothing", path, strings.Join(args, " "))
}

// firstLine is the first non-empty line of s, trimmed.
func firstLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
}

func charDevice(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode()&fs.ModeCharDevice == 0 {
		return fmt.Errorf("%s is not a character device", path)
	}
	return nil
}

func freeBytes(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// errSocketDenied says the daemon's socket exists but this user may not
// connect to it.
var errSocketDenied = errors.New("permission denied")

func daemonStatus(ctx context.Context, socket string) (api.DaemonStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var st api.DaemonStatus
	err := (&rpc.Client{Socket: socket}).Call(ctx, api.MethodDaemonStatus, nil, &st)
	if errors.Is(err, rpc.ErrNoDaemon) {
		// The client folds every dial error into ErrNoDaemon; a socket
		// this user cannot open is a different problem.
		if _, statErr := os.Stat(socket); statErr == nil && unix.Access(socket, unix.W_OK) != nil {
			return st, errSocketDenied
		}
	}
	return st, err
}

func dnsQuery(ctx context.Context, addr, name string) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req := new(mdns.Msg)
	req.SetQuestion(name, mdns.TypeA)
	c := &mdns.Client{Net: "udp", Timeout: probeTimeout}
	resp, _, err := c.ExchangeContext(ctx, req, addr)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("no answer within %s", probeTimeout)
		}
		return nil, err
	}
	return resp, nil
}

// existingAncestor returns dir or its nearest parent that exists: the
// state dir may not have been made yet.
func existingAncestor(dir string) string {
	dir = filepath.Clean(dir)
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}
