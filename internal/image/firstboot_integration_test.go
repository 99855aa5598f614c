//go:build integration

package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"banger/internal/testutil/minbase"
)

// TestFirstBootScript runs guest/banger-firstboot in a chroot of a
// Debian minbase root (a private mount namespace, as root), with the
// package manager, systemd and banger-agent as stubs: the real install
// runs in the e2e test (apt through NAT to a mirror); this one covers
// the branches no mirror here can: dnf, microdnf and yum, their sshd
// unit, a system that needs no install, and each failure line.
func TestFirstBootScript(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mmdebstrap, chroot, a mount namespace): run the integration tests as root")
	}
	for _, tool := range []string{"mmdebstrap", "unshare", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not in PATH: install mmdebstrap and util-linux", tool)
		}
	}
	base := filepath.Join(t.TempDir(), "minbase")
	minbase.Make(t, minbase.Repo(t), base)

	// stubInstall is a package manager that records its arguments and
	// "installs" systemd (a stub that reports and exits), sshd and the
	// unit named by $UNIT.
	const stubInstall = `#!/bin/sh
echo "$0 $*" >>/pm.args
mkdir -p /usr/lib/systemd/system /usr/sbin
printf '#!/bin/sh\necho "stub systemd started as PID-1 stand-in"\n' >/usr/lib/systemd/systemd
chmod 755 /usr/lib/systemd/systemd
printf '#!/bin/sh\n' >/usr/sbin/sshd
chmod 755 /usr/sbin/sshd
[ "$NO_UNIT" = 1 ] || : >/usr/lib/systemd/system/$UNIT
`
	tests := []struct {
		name     string
		pm       string // stub package manager put in /usr/bin; "" leaves apt-get
		env      string // exported before the script runs
		systemd  bool   // systemd and sshd present before the boot
		wantArgs string // what the package manager was run with
		wantUnit string // enabled in multi-user.target.wants
		wantLine string // in the output
		wantFail bool
	}{
		{name: "dnf", pm: "dnf", env: "UNIT=sshd.service",
			wantArgs: "dnf -y --setopt=install_weak_deps=0 install systemd systemd-udev dbus openssh-server iproute e2fsprogs util-linux kmod",
			wantUnit: "sshd.service", wantLine: "installed systemd and sshd; starting systemd"},
		{name: "microdnf", pm: "microdnf", env: "UNIT=sshd.service",
			wantArgs: "microdnf -y --setopt=install_weak_deps=0 install", wantUnit: "sshd.service", wantLine: "stub systemd started"},
		{name: "yum", pm: "yum", env: "UNIT=sshd.service", wantArgs: "yum -y", wantUnit: "sshd.service", wantLine: "stub systemd started"},
		{name: "apt-get, debian unit name", pm: "apt-get", env: "UNIT=ssh.service",
			wantArgs: "apt-get -q -y --no-install-recommends install systemd systemd-sysv udev dbus openssh-server iproute2 e2fsprogs util-linux kmod",
			wantUnit: "ssh.service", wantLine: "stub systemd started"},
		{name: "already installed", systemd: true, wantLine: "stub systemd started"},
		{name: "install leaves no unit", pm: "dnf", env: "NO_UNIT=1",
			wantLine: "banger-firstboot: error: the installed sshd has no ssh.service or sshd.service unit", wantFail: true},
		{name: "no package manager", pm: "none",
			wantLine: "banger-firstboot: error: the image has no systemd or sshd and no package manager to install them with", wantFail: true},
		{name: "network setup fails", pm: "dnf", env: "UNIT=sshd.service AGENT_FAIL=1",
			wantLine: "banger-firstboot: error: network setup: banger-agent net: no network interface found", wantFail: true},
		{name: "package manager fails", pm: "dnf", env: "UNIT=sshd.service PM_FAIL=1",
			wantLine: "banger-firstboot: error: dnf failed (exit 1): Error: Unable to find a match: systemd-udev", wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			if out, err := exec.Command("cp", "-a", "--reflink=auto", base, root).CombinedOutput(); err != nil {
				t.Fatalf("copy the minbase root: %v: %s", err, out)
			}
			write := func(p, body string) {
				t.Helper()
				full := filepath.Join(root, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				os.Remove(full)
				if err := os.WriteFile(full, []byte(body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			script, err := guestFS.ReadFile("guest/banger-firstboot")
			if err != nil {
				t.Fatal(err)
			}
			write(FirstBootInit, string(script))
			// Never the real one: it would grow the host's root filesystem.
			write("/usr/local/sbin/banger-growroot", "#!/bin/sh\necho growroot stub\n")
			write(AgentImagePath, `#!/bin/sh
[ "$1" = net ] || exit 2
if [ "$AGENT_FAIL" = 1 ]; then echo "banger-agent net: no network interface found" >&2; exit 1; fi
echo "banger-agent net: eth0 172.16.0.9/24 gw 172.16.0.1 dns 172.16.0.1"
`)
			// The minbase root has apt-get: the other managers take its place.
			if tt.pm != "apt-get" && tt.pm != "" {
				for _, p := range []string{"usr/bin/apt-get", "usr/bin/dnf", "usr/bin/microdnf", "usr/bin/yum"} {
					os.Remove(filepath.Join(root, p))
				}
			}
			if tt.pm != "" && tt.pm != "none" {
				pm := stubInstall
				if strings.Contains(tt.env, "PM_FAIL=1") {
					pm = "#!/bin/sh\necho \"$0 $*\" >>/pm.args\necho 'Last metadata expiration check: 0:00:01 ago.'\necho 'Error: Unable to find a match: systemd-udev'\nexit 1\n"
				}
				if tt.pm == "apt-get" {
					// update and clean do nothing; install installs.
					pm = "#!/bin/sh\ncase \"$*\" in *install*) ;; *) echo \"$0 $*\" >>/pm.args.other; exit 0 ;; esac\n" + strings.TrimPrefix(stubInstall, "#!/bin/sh\n")
				}
				write("/usr/bin/"+tt.pm, pm)
			}
			if tt.systemd {
				write("/usr/lib/systemd/systemd", "#!/bin/sh\necho \"stub systemd started as PID-1 stand-in\"\n")
				write("/usr/sbin/sshd", "#!/bin/sh\n")
			}

			out, failed := runFirstBoot(t, root, tt.env)
			if failed != tt.wantFail {
				t.Errorf("failed %v, want %v; output:\n%s", failed, tt.wantFail, out)
			}
			if !strings.Contains(out, tt.wantLine) {
				t.Errorf("output lacks %q:\n%s", tt.wantLine, out)
			}
			if tt.wantArgs != "" {
				args, _ := os.ReadFile(filepath.Join(root, "pm.args"))
				if !strings.Contains(strings.ReplaceAll(string(args), "/usr/bin/", ""), tt.wantArgs) {
					t.Errorf("package manager ran with %q, want %q", args, tt.wantArgs)
				}
			}
			if tt.wantUnit != "" {
				link, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants", tt.wantUnit))
				if err != nil || !strings.HasSuffix(link, "/systemd/system/"+tt.wantUnit) {
					t.Errorf("%s enabled: got %q, %v", tt.wantUnit, link, err)
				}
			}
			if installed := strings.Contains(out, FirstBootInstalledLine); installed != (!tt.wantFail && !tt.systemd) {
				t.Errorf("output has the installed line %q: %v, want %v:\n%s", FirstBootInstalledLine, installed, !tt.wantFail && !tt.systemd, out)
			}
			if tt.systemd && strings.Contains(out, "first boot: installing") {
				t.Errorf("an image with systemd and sshd ran the install:\n%s", out)
			}
			if tt.pm == "apt-get" {
				if _, err := os.Stat(filepath.Join(root, "usr/sbin/policy-rc.d")); err == nil {
					t.Errorf("policy-rc.d left in the image after the install")
				}
			}
		})
	}
}

// runFirstBoot runs the first-boot init in a chroot of root in a private
// mount namespace with env ("K=V K=V") exported, and returns its output
// and whether it failed: printed its error line and waited (it is
// killed after 3 s then), or exited non-zero.
func runFirstBoot(t *testing.T, root, env string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	shell := "export PATH=/usr/sbin:/usr/bin:/sbin:/bin " + env + "; exec " + FirstBootInit
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--fork", "--kill-child",
		"chroot", root, "/bin/sh", "-c", shell)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The init's sleep outlives a kill of unshare alone: kill the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(45 * time.Second)
	for {
		select {
		case err := <-done:
			return out.String(), err != nil
		case <-deadline:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Fatalf("the first-boot init neither finished nor failed in 45 s:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
			if strings.Contains(out.String(), FirstBootErrorPrefix) {
				time.Sleep(time.Second) // it must wait, not exit
				select {
				case err := <-done:
					t.Errorf("the init exited (%v) after its error line, want it to wait for the host", err)
				default:
				}
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
				return out.String(), true
			}
		}
	}
}

// syncBuffer is an output buffer a command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
