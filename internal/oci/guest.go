package oci

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"banger/internal/image"
)

// Guest says what AddGuest put into an image tree and what the image
// has of what banger's guest pieces need.
type Guest struct {
	// Files are the image paths AddGuest wrote (files and symlinks),
	// sorted; Removed the ones it deleted (SSH host keys, hostname,
	// resolv.conf).
	Files   []string
	Removed []string
	// AgentDigest is "sha256:<hex>" of the agent in the image.
	AgentDigest string
	// HasSystemd: the image has systemd, which runs banger's units.
	// Without it the units are inert and the image needs another way to
	// start the agent, network and sshd.
	HasSystemd bool
	// HasInit: /sbin/init exists (the kernel's default init).
	HasInit bool
	// HasSSHD: the image has OpenSSH's sshd; without it the VM cannot
	// be reached over SSH.
	HasSSHD bool
	// HasShell: /bin/sh exists (image.FirstBootInit is a shell script).
	HasShell bool
	// PackageManager is the first of image.FirstBootManagers the image
	// has, else "apk" when it has Alpine's, else "".
	PackageManager string
	// MissingTools lists programs banger's guest units run that the image
	// lacks (ssh-keygen for host keys, resize2fs and findmnt to grow the
	// root filesystem).
	MissingTools []string
}

// sshdDropIn is the drop-in internal/image writes for Debian's
// ssh.service; images whose unit is sshd.service get a copy.
const sshdDropIn = "/etc/systemd/system/ssh.service.d/banger.conf"

// guestTools are the programs the guest units run, by the directories
// they may live in.
var guestTools = []string{"ssh-keygen", "resize2fs", "findmnt"}

var binDirs = []string{"usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"}

// AddGuest adds banger's guest pieces to the image tree dir: the agent
// (agentPath, a static executable) at image.AgentImagePath and the guest
// files of internal/image (units, network and root-growing scripts, the
// sshd and ssh.service drop-ins, logind drop-in, fstab, hosts, locale),
// enables banger's units and masks the ones the default image masks,
// and removes SSH host keys, /etc/hostname and /etc/resolv.conf (each VM
// makes its own) and empties /etc/machine-id. Every path is resolved
// inside the tree, so the image's own symlinks cannot send a write out
// of it. It needs root to give the files their owner.
func AddGuest(dir, agentPath string) (Guest, error) {
	overlay, err := os.MkdirTemp("", "banger-guest-")
	if err != nil {
		return Guest{}, fmt.Errorf("add guest files: %w", err)
	}
	defer os.RemoveAll(overlay)
	digest, err := image.WriteGuestOverlay(overlay, agentPath)
	if err != nil {
		return Guest{}, fmt.Errorf("add guest files: %w", err)
	}
	a := newApplier(dir, Limits{})
	a.layerPaths = map[string]bool{}
	g := Guest{AgentDigest: digest}
	now := time.Now()

	lstat := func(p string) (fs.FileInfo, error) {
		d, base := splitPath(p)
		host, err := a.res.dir(d, false)
		if err != nil {
			return nil, err
		}
		return os.Lstat(hostPath(host, base))
	}
	exists := func(p string) bool {
		_, err := lstat(p)
		return err == nil
	}
	// The kernel's modules come on a disk of their own (see
	// image.MakeModulesDisk): mounted where modprobe looks, /lib/modules,
	// through /usr on a merged-/usr root.
	modulesAt := "/lib/modules"
	if st, err := lstat("lib"); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		modulesAt = "/usr/lib/modules"
	}
	if err := appendFile(filepath.Join(overlay, "etc/fstab"), modulesFstab(modulesAt)); err != nil {
		return Guest{}, fmt.Errorf("add guest files: %w", err)
	}
	writeFile := func(p string, mode fs.FileMode, src string) error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: int64(mode.Perm()), Size: st.Size(), ModTime: now}
		g.Files = append(g.Files, "/"+p)
		return a.apply(hdr, bufio.NewReader(f))
	}
	symlink := func(p, target string) error {
		g.Files = append(g.Files, "/"+p)
		return a.apply(&tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: target, Mode: 0o777, ModTime: now}, nil)
	}

	// The overlay: every file with its mode, root-owned.
	err = filepath.WalkDir(overlay, func(host string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(overlay, host)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return writeFile(filepath.ToSlash(rel), info.Mode(), host)
	})
	if err != nil {
		return Guest{}, fmt.Errorf("add guest files: %w", err)
	}

	g.HasSystemd = exists("usr/lib/systemd/systemd") || exists("lib/systemd/systemd")
	g.HasInit = exists("sbin/init")
	g.HasSSHD = exists("usr/sbin/sshd") || exists("sbin/sshd")
	g.HasShell = exists("bin/sh")
	for _, pm := range append(image.FirstBootManagers, "apk") {
		for _, d := range binDirs {
			if exists(d + "/" + pm) {
				g.PackageManager = pm
				break
			}
		}
		if g.PackageManager != "" {
			break
		}
	}
	// An image whose first boot installs systemd and sshd gets every
	// mask and drop-in now: the units they name arrive later.
	firstBoot := !g.HasSystemd || !g.HasSSHD
	for _, tool := range guestTools {
		found := false
		for _, d := range binDirs {
			if exists(d + "/" + tool) {
				found = true
				break
			}
		}
		if !found {
			g.MissingTools = append(g.MissingTools, tool)
		}
	}

	// Units: enabled as systemctl enable would, by their WantedBy.
	for _, unit := range image.EnabledUnits() {
		data, err := os.ReadFile(filepath.Join(overlay, "etc/systemd/system", unit))
		if err != nil {
			return Guest{}, fmt.Errorf("add guest files: unit %s: %w", unit, err)
		}
		for _, target := range wantedBy(data) {
			if err := symlink("etc/systemd/system/"+target+".wants/"+unit, "/etc/systemd/system/"+unit); err != nil {
				return Guest{}, fmt.Errorf("add guest files: enable %s: %w", unit, err)
			}
		}
	}
	if firstBoot || exists("usr/lib/systemd/system/sshd.service") || exists("lib/systemd/system/sshd.service") {
		if err := writeFile("etc/systemd/system/sshd.service.d/banger.conf", 0o644, filepath.Join(overlay, sshdDropIn)); err != nil {
			return Guest{}, fmt.Errorf("add guest files: sshd.service drop-in: %w", err)
		}
	}
	masked, err := image.MaskedUnits()
	if err != nil {
		return Guest{}, fmt.Errorf("add guest files: %w", err)
	}
	for _, unit := range masked {
		if firstBoot || exists("usr/lib/systemd/system/"+unit) || exists("lib/systemd/system/"+unit) || exists("etc/systemd/system/"+unit) {
			if err := symlink("etc/systemd/system/"+unit, "/dev/null"); err != nil {
				return Guest{}, fmt.Errorf("add guest files: mask %s: %w", unit, err)
			}
		}
	}

	// Per-VM identity: made at first boot, never baked in.
	var doomed []string
	if host, err := a.res.dir("etc/ssh", false); err == nil {
		keys, _ := filepath.Glob(filepath.Join(host, "ssh_host_*"))
		for _, k := range keys {
			doomed = append(doomed, "etc/ssh/"+filepath.Base(k))
		}
	}
	doomed = append(doomed, "etc/hostname", "etc/resolv.conf")
	for _, p := range doomed {
		if !exists(p) {
			continue
		}
		d, base := splitPath(p)
		host, err := a.res.dir(d, false)
		if err != nil {
			return Guest{}, fmt.Errorf("add guest files: remove /%s: %w", p, err)
		}
		if err := a.remove(hostPath(host, base)); err != nil {
			return Guest{}, fmt.Errorf("add guest files: remove /%s: %w", p, err)
		}
		g.Removed = append(g.Removed, "/"+p)
	}
	if exists("etc/machine-id") {
		if err := a.apply(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/machine-id", Mode: 0o444, ModTime: now}, bytes.NewReader(nil)); err != nil {
			return Guest{}, fmt.Errorf("add guest files: empty /etc/machine-id: %w", err)
		}
		g.Files = append(g.Files, "/etc/machine-id")
	}
	// /root is the work disk's mount point.
	if !exists("root") {
		if err := a.apply(&tar.Header{Typeflag: tar.TypeDir, Name: "root", Mode: 0o700, ModTime: now}, nil); err != nil {
			return Guest{}, fmt.Errorf("add guest files: make /root: %w", err)
		}
	}
	sort.Strings(g.Files)
	return g, nil
}

// modulesFstab is the fstab entry of the modules disk, mounted at dir.
// nofail: an image whose kernel has no modules boots without the disk.
func modulesFstab(dir string) string {
	return "# banger: the kernel's modules, on a read-only disk of their own.\n" +
		"LABEL=" + image.ModulesLabel + " " + dir + " ext4 ro,nofail,x-systemd.device-timeout=10s 0 0\n"
}

// appendFile appends text to the file at path.
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}

// wantedBy reads the WantedBy= targets of a unit's [Install] section.
func wantedBy(unit []byte) []string {
	var out []string
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if v, ok := strings.CutPrefix(line, "WantedBy="); ok && section == "[Install]" {
			out = append(out, strings.Fields(v)...)
		}
	}
	return out
}

// errNoGuest is returned by Pull when no agent is given.
var errNoGuest = errors.New("no banger-agent given: it goes into every image (see image.FindAgent)")
