package vm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"banger/internal/model"
	"banger/internal/vmm"
)

// handlesFile is the name of the live-handle file in a VM's directory.
const handlesFile = "handles.json"

// handles is what the daemon needs to reach or tear down a VM's host
// resources. It is written before each resource is used, so a daemon
// that dies at any point finds what it must clean up.
type handles struct {
	VMM vmm.Handle `json:"vmm"`
	Tap string     `json:"tap,omitempty"`
	// The devices of a device-mapper system disk (Firecracker): its
	// loop devices and the snapshot's name and node.
	BaseLoop string `json:"base_loop,omitempty"`
	COWLoop  string `json:"cow_loop,omitempty"`
	DMName   string `json:"dm_name,omitempty"`
	DMDev    string `json:"dm_dev,omitempty"`
}

// withDisk returns h with the system disk's device names of rt.
func (h handles) withDisk(rt model.VMRuntime) handles {
	h.BaseLoop, h.COWLoop, h.DMName, h.DMDev = rt.BaseLoop, rt.COWLoop, rt.DMName, rt.DMDev
	return h
}

// diskFromHandles fills rec's missing system disk device names from its
// handles file, so that a record whose last update was lost (a daemon
// dying between the two writes) still finds its devices.
func diskFromHandles(rec *model.VMRecord) {
	rt := &rec.Runtime
	if rt.BaseLoop != "" || rt.COWLoop != "" || rt.DMDev != "" {
		return
	}
	h := readHandles(*rec)
	rt.BaseLoop, rt.COWLoop, rt.DMDev = h.BaseLoop, h.COWLoop, h.DMDev
	if rt.DMName == "" {
		rt.DMName = h.DMName
	}
}

func writeHandles(dir string, h handles) error {
	data, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return fmt.Errorf("encode handles: %w", err)
	}
	tmp := filepath.Join(dir, handlesFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write handles: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, handlesFile)); err != nil {
		return fmt.Errorf("write handles: %w", err)
	}
	return nil
}

// readHandles returns the handles of a VM, falling back to the mirror on
// its record when the file is missing, unreadable or corrupt.
func readHandles(rec model.VMRecord) handles {
	if rec.Runtime.VMDir == "" {
		return handlesFromRecord(rec)
	}
	data, err := os.ReadFile(filepath.Join(rec.Runtime.VMDir, handlesFile))
	if err != nil {
		return handlesFromRecord(rec)
	}
	var h handles
	if err := json.Unmarshal(data, &h); err != nil {
		return handlesFromRecord(rec)
	}
	return h
}

func handlesFromRecord(rec model.VMRecord) handles {
	h := handles{
		Tap: rec.Runtime.TapDevice,
		VMM: vmm.Handle{
			Driver:        rec.Runtime.VMM,
			PID:           rec.Runtime.PID,
			StartTime:     rec.Runtime.PIDStartTime,
			ControlSocket: rec.Runtime.APISockPath,
			Accel:         rec.Runtime.Accel,
			ConsoleLog:    rec.Runtime.LogPath,
			AgentSocket:   rec.Runtime.VSockPath,
		},
	}
	return h.withDisk(rec.Runtime)
}

// mirror copies the teardown-critical parts of h onto the record.
func mirror(rec *model.VMRecord, h handles) {
	rec.Runtime.TapDevice = h.Tap
	rec.Runtime.PID = h.VMM.PID
	rec.Runtime.PIDStartTime = h.VMM.StartTime
	if h.VMM.ControlSocket != "" {
		rec.Runtime.APISockPath = h.VMM.ControlSocket
	}
	if h.VMM.Driver != "" {
		rec.Runtime.VMM = h.VMM.Driver
	}
	if h.VMM.Accel != "" {
		rec.Runtime.Accel = h.VMM.Accel
	}
	if h.VMM.AgentSocket != "" {
		rec.Runtime.VSockPath = h.VMM.AgentSocket
	}
	if h.VMM.ConsoleLog != "" {
		rec.Runtime.LogPath = h.VMM.ConsoleLog
	}
}
