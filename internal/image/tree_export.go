package image

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// This file exports the pieces of the default image's build that other
// image sources (internal/oci's registry import) reuse, so that every
// image carries the same guest files, agent and units.

// WriteGuestOverlay checks the agent at agentPath (a static executable),
// then writes under dir, as a tree whose root stands for the image's
// "/", the guest files every image gets once its packages are in (units,
// scripts, the sshd drop-ins, fstab, hosts, locale) and the agent at
// AgentImagePath. Directories are 0755 and files keep their modes; all
// are owned by the caller. It returns the agent's digest
// ("sha256:<hex>"). The files that only matter while a Debian kernel
// package builds its initrd are left out.
func WriteGuestOverlay(dir, agentPath string) (agentDigest string, err error) {
	if err := checkAgent(agentPath); err != nil {
		return "", err
	}
	if err := writeOverlay(dir, false); err != nil {
		return "", fmt.Errorf("write guest files: %w", err)
	}
	digest, err := installAgent(dir, agentPath)
	if err != nil {
		return "", fmt.Errorf("copy %s: %w", AgentName, err)
	}
	return digest, nil
}

// EnabledUnits returns the guest units every image enables.
func EnabledUnits() []string {
	return append([]string(nil), enabledUnits...)
}

// MaskedUnits returns the units the default image disables and masks
// when present (they would fight banger-net or run apt in the
// background of a short-lived VM), as customize.sh lists them.
func MaskedUnits() ([]string, error) {
	data, err := guestFS.ReadFile("guest/" + customizeScript)
	if err != nil {
		return nil, fmt.Errorf("read embedded %s: %w", customizeScript, err)
	}
	units := maskedUnitsFromScript(data)
	if len(units) == 0 {
		return nil, fmt.Errorf("no masked units found in %s", customizeScript)
	}
	return units, nil
}

// maskedUnitsFromScript reads the word list of customize.sh's
// "for unit in ...; do" loop, which may continue over several lines.
func maskedUnitsFromScript(script []byte) []string {
	var units []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(script))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !in {
			rest, ok := strings.CutPrefix(line, "for unit in ")
			if !ok {
				continue
			}
			in, line = true, rest
		}
		line, done := strings.CutSuffix(line, "; do")
		line = strings.TrimSuffix(line, `\`)
		units = append(units, strings.Fields(line)...)
		if done {
			break
		}
	}
	return units
}

// TreeBytes is the space the files under dir occupy, as the default
// image's build measures it before sizing rootfs.ext4: allocated blocks
// of regular files (hard links counted once), plus a block for every
// directory, symlink and other node.
func TreeBytes(dir string) (int64, error) { return treeBytes(dir) }
