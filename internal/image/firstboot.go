package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// FirstBootInit is the init of VMs whose image lacks systemd or sshd: at
// a VM's first boot it installs them with the image's package manager,
// then hands over to systemd (see guest/banger-firstboot).
const FirstBootInit = "/usr/local/sbin/banger-firstboot"

// FirstBootFile, in an image's artifact dir, marks an image whose VMs
// boot through FirstBootInit.
const FirstBootFile = "firstboot.json"

// FirstBootErrorPrefix starts the console line with which FirstBootInit
// reports that it cannot go on.
const FirstBootErrorPrefix = "banger-firstboot: error: "

// FirstBootInstalledLine is the console line with which FirstBootInit
// says the install completed, right before it starts systemd: from then
// on the VM's boots need no package mirror.
const FirstBootInstalledLine = "banger-firstboot: installed systemd and sshd; starting systemd"

// FirstBoot is FirstBootFile: what a VM's first boot installs, and with
// what.
type FirstBoot struct {
	// PackageManager is the program that installs them: apt-get, dnf,
	// microdnf or yum.
	PackageManager string `json:"package_manager"`
	// Installs names what the image lacks: "systemd", "sshd" or both.
	Installs []string `json:"installs"`
}

// FirstBootManagers are the package managers FirstBootInit can install
// systemd and sshd with, in the order it looks for them.
var FirstBootManagers = []string{"apt-get", "dnf", "microdnf", "yum"}

// Describe says in a few words what a VM's first boot does.
func (f FirstBoot) Describe() string {
	return fmt.Sprintf("installs %s with %s at its first boot", strings.Join(f.Installs, " and "), f.PackageManager)
}

// WriteFirstBoot writes FirstBootFile into dir.
func WriteFirstBoot(dir string, f FirstBoot) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, FirstBootFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", FirstBootFile, err)
	}
	return nil
}

// ReadFirstBoot reads dir's FirstBootFile; ok is false when there is
// none (an image that boots systemd directly) or dir is "".
func ReadFirstBoot(dir string) (f FirstBoot, ok bool, err error) {
	if dir == "" {
		return FirstBoot{}, false, nil
	}
	data, err := os.ReadFile(filepath.Join(dir, FirstBootFile))
	if errors.Is(err, os.ErrNotExist) {
		return FirstBoot{}, false, nil
	}
	if err != nil {
		return FirstBoot{}, false, fmt.Errorf("read %s: %w", FirstBootFile, err)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return FirstBoot{}, false, fmt.Errorf("read %s: %w", filepath.Join(dir, FirstBootFile), err)
	}
	if f.PackageManager == "" {
		return FirstBoot{}, false, fmt.Errorf("read %s: no package manager", filepath.Join(dir, FirstBootFile))
	}
	return f, true, nil
}
