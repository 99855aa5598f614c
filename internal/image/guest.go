package image

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
)

// The files banger adds to the default image live in guest/ so they can
// be read and reviewed as files; guestFiles says where each one goes.
//
//go:embed guest
var guestFS embed.FS

// guestFile is one embedded file and its place in the image.
type guestFile struct {
	Src  string      // name under guest/
	Dst  string      // absolute path in the image
	Mode os.FileMode // owner is always root
	// Early files go in before any package is installed (the initramfs
	// hook must be there when the kernel package builds the initrd); the
	// others after all packages, so no package overwrites them.
	Early bool
}

var guestFiles = []guestFile{
	{Src: "initramfs-hook", Dst: "/etc/initramfs-tools/hooks/banger", Mode: 0o755, Early: true},
	{Src: "initramfs-modules.conf", Dst: "/etc/initramfs-tools/conf.d/banger.conf", Mode: 0o644, Early: true},
	{Src: "banger-net.service", Dst: "/etc/systemd/system/banger-net.service", Mode: 0o644},
	{Src: "banger-hostkeys.service", Dst: "/etc/systemd/system/banger-hostkeys.service", Mode: 0o644},
	{Src: "banger-growroot.service", Dst: "/etc/systemd/system/banger-growroot.service", Mode: 0o644},
	{Src: "banger-growroot", Dst: "/usr/local/sbin/banger-growroot", Mode: 0o755},
	{Src: "banger-agent.service", Dst: "/etc/systemd/system/banger-agent.service", Mode: 0o644},
	{Src: "banger-firstboot", Dst: FirstBootInit, Mode: 0o755},
	{Src: "ssh-service-banger.conf", Dst: "/etc/systemd/system/ssh.service.d/banger.conf", Mode: 0o644},
	{Src: "sshd-banger.conf", Dst: "/etc/ssh/sshd_config.d/banger.conf", Mode: 0o644},
	{Src: "logind-banger.conf", Dst: "/etc/systemd/logind.conf.d/banger.conf", Mode: 0o644},
	{Src: "fstab", Dst: "/etc/fstab", Mode: 0o644},
	{Src: "hosts", Dst: "/etc/hosts", Mode: 0o644},
	{Src: "locale", Dst: "/etc/default/locale", Mode: 0o644},
}

// customizeScript runs as mmdebstrap's last customize hook (see the
// script for what it does); it is not installed in the image.
const customizeScript = "customize.sh"

// enabledUnits are the units customize.sh enables; the build's checks
// and tests use the list.
var enabledUnits = []string{"banger-net.service", "banger-hostkeys.service", "banger-growroot.service", "banger-agent.service"}

// writeOverlay writes the early or late guest files under dir as a tree
// that mmdebstrap's sync-in copies onto the image root. Every directory
// is 0755 and everything is owned by the caller (root in a build):
// sync-in also applies the modes of the directories themselves, "."
// included, to the image.
func writeOverlay(dir string, early bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	for _, f := range guestFiles {
		if f.Early != early {
			continue
		}
		data, err := guestFS.ReadFile("guest/" + f.Src)
		if err != nil {
			return fmt.Errorf("read embedded %s: %w", f.Src, err)
		}
		if err := writeOverlayFile(dir, f.Dst, data, f.Mode); err != nil {
			return err
		}
	}
	return nil
}

// writeOverlayFile writes data to the image path dst under the overlay
// dir, with mode and 0755 parent directories.
func writeOverlayFile(dir, dst string, data []byte, mode os.FileMode) error {
	p := filepath.Join(dir, filepath.FromSlash(dst))
	if err := mkdirAll0755(dir, filepath.Dir(p)); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	// WriteFile's mode goes through the umask.
	return os.Chmod(p, mode)
}

// mkdirAll0755 creates dir and its parents below root, each 0755
// whatever the umask.
func mkdirAll0755(root, dir string) error {
	if dir == root || len(dir) < len(root) {
		return nil
	}
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirAll0755(root, filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return err
	}
	return os.Chmod(dir, 0o755)
}

// writeCustomizeScript writes customize.sh to path, executable.
func writeCustomizeScript(path string) error {
	data, err := guestFS.ReadFile("guest/" + customizeScript)
	if err != nil {
		return fmt.Errorf("read embedded %s: %w", customizeScript, err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		return err
	}
	return os.Chmod(path, 0o755)
}
