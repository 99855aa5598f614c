package fctest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Environment of the fake jailer (JailerMain), besides the fake
// Firecracker's, which it passes on.
const (
	// EnvJailerVersion is the version it reports and behaves as; default
	// the fake Firecracker's (EnvVersion), else 1.7.0.
	EnvJailerVersion = "BANGER_FAKEJAILER_VERSION"
	// EnvJailerNoPIDFile "1": a faulty jailer that writes no pid file.
	EnvJailerNoPIDFile = "BANGER_FAKEJAILER_NO_PID_FILE"
)

// jailerOptions is the jailer's command line.
type jailerOptions struct {
	id, execFile, chrootBase, netns string
	uid, gid                        int
	daemonize, newPIDNS             bool
	version                         bool
	extra                           []string // after "--", for Firecracker
}

// parseJailerArgs reads the jailer's command line as the jailer does:
// "--name value" and "--flag", Firecracker's arguments after "--".
// Cgroup and resource-limit arguments are accepted and ignored.
func parseJailerArgs(args []string) (jailerOptions, error) {
	o := jailerOptions{chrootBase: "/srv/jailer"}
	values := map[string]*string{"id": &o.id, "exec-file": &o.execFile, "chroot-base-dir": &o.chrootBase, "netns": &o.netns}
	ignored := map[string]bool{"cgroup": true, "cgroup-version": true, "parent-cgroup": true, "resource-limit": true}
	flags := map[string]*bool{"daemonize": &o.daemonize, "new-pid-ns": &o.newPIDNS, "version": &o.version}
	var uid, gid string
	values["uid"], values["gid"] = &uid, &gid
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.extra = args[i+1:]
			break
		}
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			return o, fmt.Errorf("found argument %q which wasn't expected", a)
		}
		if f, ok := flags[name]; ok {
			*f = true
			continue
		}
		v, ok := values[name]
		if !ok && !ignored[name] {
			return o, fmt.Errorf("found argument %q which wasn't expected", a)
		}
		if i+1 >= len(args) {
			return o, fmt.Errorf("argument %q needs a value", a)
		}
		i++
		if v != nil {
			*v = args[i]
		}
	}
	if o.version {
		return o, nil
	}
	for name, v := range map[string]string{"id": o.id, "exec-file": o.execFile, "uid": uid, "gid": gid} {
		if v == "" {
			return o, fmt.Errorf("missing argument: --%s", name)
		}
	}
	var err error
	if o.uid, err = parseID("uid", uid); err != nil {
		return o, err
	}
	if o.gid, err = parseID("gid", gid); err != nil {
		return o, err
	}
	return o, nil
}

func parseID(what, s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid %s: %s", what, s)
	}
	return int(n), nil
}

var jailerIDRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// The jail's directories the jailer creates and gives to uid:gid, and
// the devices it makes in it.
var (
	jailFolders = []string{"/", "/dev", "/dev/net", "/run"}
	jailDevices = []jailDevice{
		{"/dev/net/tun", 10, 200, false},
		{"/dev/kvm", 10, 232, false},
		{"/dev/urandom", 1, 9, true},
	}
)

type jailDevice struct {
	path         string
	major, minor uint32
	optional     bool // a warning, not an error, when mknod fails
}

// JailerMain runs a fake jailer with the jailer's command line
// (docs/jailer.md of a Firecracker release) and returns its exit status.
// As the jailer, it must run as root. It validates --id and --exec-file,
// creates <chroot-base-dir>/<exec-file name>/<id>/root, copies the exec
// file there, joins --netns, enters a new mount namespace and
// pivot_roots into the jail, gives /, /dev, /dev/net and /run to
// --uid:--gid, makes /dev/net/tun, /dev/kvm, /dev/urandom (and
// /dev/userfaultfd where the host has it), then runs the copy as
// uid:gid with --id, the --start-time-* and --parent-cpu-time-us
// arguments and the arguments after "--":
//
//   - in its own process (exec) by default; from 1.7 on it first writes
//     its pid to <exec-file name>.pid at the jail's root;
//   - with --new-pid-ns, as a child in a new pid namespace whose pid it
//     writes to the pid file, then exits;
//   - with --daemonize, from 1.7 on as a child in a new session (the
//     double fork) whose pid it writes to the pid file, then exits;
//     before 1.7 it calls setsid itself (which fails when it leads a
//     process group) and execs. Both send stdio to /dev/null.
//
// Unlike the real jailer it keeps the BANGER_FAKEFC_ environment (the
// real one clears it) and passes the fake Firecracker its spec and
// record files as descriptors (EnvSpecFD, EnvRecordFD). It sets no
// cgroups or resource limits.
func JailerMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseJailerArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "fake jailer: %v\n", err)
		return 1
	}
	version := os.Getenv(EnvJailerVersion)
	if version == "" {
		version = os.Getenv(EnvVersion)
	}
	if version == "" {
		version = "1.7.0"
	}
	if o.version {
		fmt.Fprintf(stdout, "Jailer v%s\n", version)
		return 0
	}
	// The mount namespace, root and credentials are this thread's.
	runtime.LockOSThread()
	if err := jail(o, atLeast17(version), stdout); err != nil {
		fmt.Fprintf(stderr, "fake jailer: %v\n", err)
		return 1
	}
	return 0
}

// atLeast17 reports whether version is 1.7.0 or later, where the jailer
// always writes the pid file and daemonizes by a double fork.
func atLeast17(version string) bool {
	parts := strings.SplitN(version, ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	return major > 1 || (major == 1 && minor >= 7)
}

// jail builds the jail and runs Firecracker in it. It returns only on
// error, or in the parent of a Firecracker it started as a child.
func jail(o jailerOptions, v17 bool, stdout io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("the jailer must run as root")
	}
	if !jailerIDRE.MatchString(o.id) {
		return fmt.Errorf("invalid instance id %q", o.id)
	}
	execFile, err := filepath.EvalSymlinks(o.execFile)
	if err == nil {
		execFile, err = filepath.Abs(execFile)
	}
	if err != nil {
		return fmt.Errorf("failed to canonicalize path %s: %w", o.execFile, err)
	}
	if fi, err := os.Stat(execFile); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file", execFile)
	}
	name := filepath.Base(execFile)
	if !strings.Contains(name, "firecracker") {
		return fmt.Errorf("invalid filename: the filename of --exec-file must contain \"firecracker\": %s", name)
	}
	base, err := filepath.EvalSymlinks(o.chrootBase)
	if err != nil {
		return fmt.Errorf("failed to canonicalize path %s: %w", o.chrootBase, err)
	}
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", base)
	}
	chroot := filepath.Join(base, name, o.id, "root")
	if err := os.MkdirAll(chroot, 0o755); err != nil {
		return err
	}
	if err := copyExec(execFile, filepath.Join(chroot, name)); err != nil {
		return err
	}
	env, files, err := passOn()
	if err != nil {
		return err
	}
	uffdMinor, uffd := userfaultfdMinor()
	if o.netns != "" {
		if err := joinNetns(o.netns); err != nil {
			return err
		}
	}
	var devNull *os.File
	if o.daemonize {
		if devNull, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
			return err
		}
	}
	if err := pivotInto(chroot); err != nil {
		return err
	}
	for _, dir := range jailFolders {
		if err := ownedDir(dir, o.uid, o.gid); err != nil {
			return err
		}
	}
	devices := jailDevices[:len(jailDevices):len(jailDevices)]
	if uffd {
		devices = append(devices, jailDevice{"/dev/userfaultfd", 10, uffdMinor, false})
	}
	for _, d := range devices {
		if err := ownedCharDevice(d.path, d.major, d.minor, o.uid, o.gid); err != nil {
			if !d.optional {
				return err
			}
			fmt.Fprintf(stdout, "Warning! Could not create %s device inside jailer: %v.\n", d.path, err)
		}
	}

	exe := "/" + name
	argv := append([]string{exe, "--id", o.id, "--start-time-us", microseconds(unix.CLOCK_MONOTONIC),
		"--start-time-cpu-us", microseconds(unix.CLOCK_PROCESS_CPUTIME_ID), "--parent-cpu-time-us", "0"}, o.extra...)
	pidFile := exe + ".pid"
	if o.newPIDNS || (o.daemonize && v17) {
		return spawn(exe, argv, env, files, o, devNull, pidFile)
	}
	if o.daemonize {
		if _, err := unix.Setsid(); err != nil {
			return fmt.Errorf("failed to daemonize: setsid: %w", err)
		}
		for fd := range 3 {
			if err := unix.Dup2(int(devNull.Fd()), fd); err != nil {
				return fmt.Errorf("dup2: %w", err)
			}
		}
	}
	if v17 && os.Getenv(EnvJailerNoPIDFile) != "1" {
		if err := writePIDFile(pidFile, os.Getpid()); err != nil {
			return err
		}
	}
	for i, f := range files {
		// Kept open across exec, at the numbers the environment names.
		if _, err := unix.FcntlInt(f.Fd(), unix.F_SETFD, 0); err != nil {
			return err
		}
		env = append(env, fdEnv[i]+"="+strconv.Itoa(int(f.Fd())))
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(o.gid, o.gid, o.gid); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setresuid(o.uid, o.uid, o.uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	return fmt.Errorf("failed to exec into Firecracker: %w", unix.Exec(exe, argv, env))
}

// fdEnv are the variables that name the descriptors passOn returns, in
// its order.
var fdEnv = []string{EnvSpecFD, EnvRecordFD}

// passOn returns the fake Firecracker's environment and its spec and
// record files, opened here, outside the jail.
func passOn() (env []string, files []*os.File, err error) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BANGER_FAKEFC_") && k != EnvSpec && k != EnvRecord && k != EnvSpecFD && k != EnvRecordFD {
			env = append(env, kv)
		}
	}
	spec, err := os.Open(os.Getenv(EnvSpec))
	if err != nil {
		return nil, nil, fmt.Errorf("open api spec (%s): %w", EnvSpec, err)
	}
	files = append(files, spec)
	if path := os.Getenv(EnvRecord); path != "" {
		rec, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open record: %w", err)
		}
		files = append(files, rec)
	}
	return env, files, nil
}

// spawn runs Firecracker as a child (in a new pid namespace with
// --new-pid-ns, in a new session with --daemonize), writes its pid to
// pidFile and returns.
func spawn(exe string, argv, env []string, files []*os.File, o jailerOptions, devNull *os.File, pidFile string) error {
	for i := range files {
		env = append(env, fdEnv[i]+"="+strconv.Itoa(3+i))
	}
	cmd := &exec.Cmd{Path: exe, Args: argv, Env: env, ExtraFiles: files,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.gid), Groups: []uint32{}},
			Setsid:     o.daemonize || isSessionLeader(),
		},
	}
	if o.daemonize {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, devNull, devNull
	}
	if o.newPIDNS {
		cmd.SysProcAttr.Cloneflags = unix.CLONE_NEWPID
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("spawn firecracker: %w", err)
	}
	return writePIDFile(pidFile, cmd.Process.Pid)
}

func isSessionLeader() bool {
	sid, err := unix.Getsid(0)
	return err == nil && sid == os.Getpid()
}

// writePIDFile writes pid to a pid file that must not exist yet.
func writePIDFile(path string, pid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return fmt.Errorf("failed to open file %s: %w", path, err)
	}
	if _, err := f.WriteString(strconv.Itoa(pid)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pivotInto makes dir this thread's root as the jailer does: a new mount
// namespace with slave propagation, dir bind-mounted (recursively) on
// itself, pivot_root, the old root detached and removed.
func pivotInto(dir string) error {
	steps := []struct {
		what string
		fn   func() error
	}{
		{"unshare mount namespace", func() error { return unix.Unshare(unix.CLONE_NEWNS) }},
		{"make mounts slaves", func() error { return unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, "") }},
		{"bind-mount the jail", func() error { return unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, "") }},
		{"chdir into the jail", func() error { return unix.Chdir(dir) }},
		{"mkdir old_root", func() error { return unix.Mkdir("old_root", 0o600) }},
		{"pivot_root", func() error { return unix.PivotRoot(".", "old_root") }},
		{"chdir /", func() error { return unix.Chdir("/") }},
		{"unmount old_root", func() error { return unix.Unmount("old_root", unix.MNT_DETACH) }},
		{"remove old_root", func() error { return unix.Rmdir("old_root") }},
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return fmt.Errorf("jail %s: %s: %w", dir, s.what, err)
		}
	}
	return nil
}

func ownedDir(dir string, uid, gid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	return os.Chown(dir, uid, gid)
}

func ownedCharDevice(path string, major, minor uint32, uid, gid int) error {
	if err := unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor))); err != nil {
		return fmt.Errorf("failed to create %s via mknod inside the jail: %w", path, err)
	}
	return os.Chown(path, uid, gid)
}

func copyExec(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, fi.Mode().Perm())
}

func joinNetns(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("failed to open file %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("failed to join network namespace %s: %w", path, err)
	}
	return nil
}

// userfaultfdMinor returns the minor number of /dev/userfaultfd from
// /proc/misc, when the host has the device.
func userfaultfdMinor() (uint32, bool) {
	data, err := os.ReadFile("/proc/misc")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[1] == "userfaultfd" {
			if n, err := strconv.ParseUint(f[0], 10, 32); err == nil {
				return uint32(n), true
			}
		}
	}
	return 0, false
}

func microseconds(clock int32) string {
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return "0"
	}
	return strconv.FormatInt(ts.Nano()/1000, 10)
}
