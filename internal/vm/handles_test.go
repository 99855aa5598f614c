package vm

import (
	"os"
	"path/filepath"
	"testing"

	"banger/internal/model"
	"banger/internal/vmm"
)

// sampleHandles is a fully populated handles value.
func sampleHandles(dir string) handles {
	return handles{
		Tap: "bgr0123456789ab",
		VMM: vmm.Handle{
			Driver:        "qemu",
			PID:           4242,
			StartTime:     987654,
			ControlSocket: filepath.Join(dir, "qmp.sock"),
			Accel:         "tcg",
			ConsoleLog:    filepath.Join(dir, "console.log"),
			AgentSocket:   filepath.Join(dir, "agent.sock"),
		},
	}
}

func TestHandlesRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    func(dir string) handles
	}{
		{name: "every field", h: sampleHandles},
		{name: "tap only (intent before the vmm starts)", h: func(string) handles { return handles{Tap: "bgrabcdef012345"} }},
		{name: "empty (vm stopped)", h: func(string) handles { return handles{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			want := tt.h(dir)
			if err := writeHandles(dir, want); err != nil {
				t.Fatalf("writeHandles: got %v, want nil", err)
			}
			// The record's mirror differs, so the result shows the file won.
			rec := model.VMRecord{Runtime: model.VMRuntime{VMDir: dir, TapDevice: "bgrrecord", PID: 1}}
			if got := readHandles(rec); got != want {
				t.Errorf("readHandles: got %+v, want %+v", got, want)
			}
			if _, err := os.Stat(filepath.Join(dir, handlesFile+".tmp")); !os.IsNotExist(err) {
				t.Errorf("temporary file after write: got stat error %v, want not-exist", err)
			}
			st, err := os.Stat(filepath.Join(dir, handlesFile))
			if err != nil {
				t.Fatalf("stat handles file: %v", err)
			}
			if got := st.Mode().Perm(); got != 0o600 {
				t.Errorf("handles file mode: got %v, want 0600", got)
			}
		})
	}
}

func TestWriteHandlesReplaces(t *testing.T) {
	dir := t.TempDir()
	first := sampleHandles(dir)
	if err := writeHandles(dir, first); err != nil {
		t.Fatalf("writeHandles(first): %v", err)
	}
	if err := writeHandles(dir, handles{}); err != nil {
		t.Fatalf("writeHandles(empty): %v", err)
	}
	rec := model.VMRecord{Runtime: model.VMRuntime{VMDir: dir}}
	if got := readHandles(rec); got != (handles{}) {
		t.Errorf("readHandles after rewrite: got %+v, want empty", got)
	}
}

func TestWriteHandlesMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone")
	if err := writeHandles(dir, handles{Tap: "bgrx"}); err == nil {
		t.Errorf("writeHandles into a missing directory: got nil, want error")
	}
}

func TestReadHandlesFallsBackToRecord(t *testing.T) {
	rt := model.VMRuntime{
		TapDevice:    "bgrfedcba98765",
		VMM:          "qemu",
		PID:          31337,
		PIDStartTime: 123456,
		APISockPath:  "/state/vms/x/qmp.sock",
		Accel:        "kvm",
		LogPath:      "/state/vms/x/console.log",
		VSockPath:    "/state/vms/x/agent.sock",
		BaseLoop:     "/dev/loop3",
		COWLoop:      "/dev/loop4",
		DMName:       "banger-x",
		DMDev:        "/dev/mapper/banger-x",
	}
	want := handles{
		BaseLoop: "/dev/loop3",
		COWLoop:  "/dev/loop4",
		DMName:   "banger-x",
		DMDev:    "/dev/mapper/banger-x",
		Tap:      "bgrfedcba98765",
		VMM: vmm.Handle{
			Driver:        "qemu",
			PID:           31337,
			StartTime:     123456,
			ControlSocket: "/state/vms/x/qmp.sock",
			Accel:         "kvm",
			ConsoleLog:    "/state/vms/x/console.log",
			AgentSocket:   "/state/vms/x/agent.sock",
		},
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // prepares dir's handles file
		noDir bool                           // the record has no VMDir
	}{
		{name: "missing file", setup: func(*testing.T, string) {}},
		{name: "corrupt json", setup: writeFile(`{"vmm": {"pid": 12`)},
		{name: "empty file", setup: writeFile(``)},
		{name: "wrong json type", setup: writeFile(`[1, 2, 3]`)},
		{name: "wrong field type", setup: writeFile(`{"vmm": {"pid": "twelve"}, "tap": "bgrfile"}`)},
		{
			name: "handles path is a directory",
			setup: func(t *testing.T, dir string) {
				if err := os.Mkdir(filepath.Join(dir, handlesFile), 0o700); err != nil {
					t.Fatal(err)
				}
			},
		},
		{name: "vm directory gone", setup: func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "record without vm dir", noDir: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			rec := model.VMRecord{Runtime: rt}
			if !tt.noDir {
				rec.Runtime.VMDir = dir
				tt.setup(t, dir)
			} else {
				// A stray handles.json in the working directory must not
				// be picked up for a record without a directory.
				t.Chdir(dir)
				writeFile(`{"tap": "bgrcwd"}`)(t, dir)
			}
			if got := readHandles(rec); got != want {
				t.Errorf("readHandles: got %+v, want %+v", got, want)
			}
		})
	}
}

func writeFile(content string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, handlesFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMirror(t *testing.T) {
	full := sampleHandles("/state/vms/x")
	tests := []struct {
		name string
		rec  model.VMRuntime // before
		h    handles
		want model.VMRuntime // after
	}{
		{
			name: "every field onto an empty record",
			h:    full,
			want: model.VMRuntime{
				TapDevice:    full.Tap,
				PID:          full.VMM.PID,
				PIDStartTime: full.VMM.StartTime,
				APISockPath:  full.VMM.ControlSocket,
				VMM:          full.VMM.Driver,
				Accel:        full.VMM.Accel,
				LogPath:      full.VMM.ConsoleLog,
				VSockPath:    full.VMM.AgentSocket,
			},
		},
		{
			name: "empty handles clear the process and tap but keep paths and driver",
			rec: model.VMRuntime{
				TapDevice: "bgrold", PID: 7, PIDStartTime: 70,
				APISockPath: "/old/qmp.sock", VMM: "qemu", Accel: "kvm",
				LogPath: "/old/console.log", VSockPath: "/old/agent.sock",
				GuestIP: "172.16.0.9",
			},
			h: handles{},
			want: model.VMRuntime{
				APISockPath: "/old/qmp.sock", VMM: "qemu", Accel: "kvm",
				LogPath: "/old/console.log", VSockPath: "/old/agent.sock",
				GuestIP: "172.16.0.9",
			},
		},
		{
			name: "tap intent only",
			rec:  model.VMRuntime{GuestIP: "172.16.0.9", PID: 7, PIDStartTime: 70},
			h:    handles{Tap: "bgrnew"},
			want: model.VMRuntime{GuestIP: "172.16.0.9", TapDevice: "bgrnew"},
		},
		{
			name: "fields handles do not carry are untouched",
			rec:  model.VMRuntime{GuestIP: "172.16.0.9", MACAddress: "02:00:00:00:00:01", VMDir: "/state/vms/x", State: model.VMStateRunning},
			h:    handles{Tap: "bgrnew", VMM: vmm.Handle{PID: 9, StartTime: 90}},
			want: model.VMRuntime{GuestIP: "172.16.0.9", MACAddress: "02:00:00:00:00:01", VMDir: "/state/vms/x", State: model.VMStateRunning, TapDevice: "bgrnew", PID: 9, PIDStartTime: 90},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := model.VMRecord{Runtime: tt.rec}
			mirror(&rec, tt.h)
			if rec.Runtime != tt.want {
				t.Errorf("mirror:\n got %+v\nwant %+v", rec.Runtime, tt.want)
			}
		})
	}
}

// TestMirrorThenFallback checks that what mirror writes is exactly what
// the fallback reads back: a lost handles file loses nothing.
func TestMirrorThenFallback(t *testing.T) {
	tests := []struct {
		name string
		h    handles
	}{
		{name: "running vm", h: sampleHandles("/state/vms/x")},
		{name: "tap only", h: handles{Tap: "bgrabc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec model.VMRecord
			mirror(&rec, tt.h)
			if got := handlesFromRecord(rec); got != tt.h {
				t.Errorf("handlesFromRecord(mirror(h)):\n got %+v\nwant %+v", got, tt.h)
			}
		})
	}
}

// TestDiskFromHandles checks that a record that lost its system disk's
// device names (its last update never landed) finds them in the handles
// file, and that the record's own names win.
func TestDiskFromHandles(t *testing.T) {
	dir := t.TempDir()
	onFile := handles{BaseLoop: "/dev/loop7", COWLoop: "/dev/loop8", DMName: "banger-a", DMDev: "/dev/mapper/banger-a"}
	if err := writeHandles(dir, onFile); err != nil {
		t.Fatal(err)
	}
	t.Run("record without names", func(t *testing.T) {
		rec := model.VMRecord{Runtime: model.VMRuntime{VMDir: dir, DMName: "banger-a"}}
		diskFromHandles(&rec)
		rt := rec.Runtime
		if rt.BaseLoop != "/dev/loop7" || rt.COWLoop != "/dev/loop8" || rt.DMDev != "/dev/mapper/banger-a" || rt.DMName != "banger-a" {
			t.Errorf("got %+v, want the handles file's devices", rt)
		}
	})
	t.Run("record with names", func(t *testing.T) {
		rec := model.VMRecord{Runtime: model.VMRuntime{VMDir: dir, BaseLoop: "/dev/loop1", DMName: "banger-a"}}
		diskFromHandles(&rec)
		if rt := rec.Runtime; rt.BaseLoop != "/dev/loop1" || rt.COWLoop != "" || rt.DMDev != "" {
			t.Errorf("got %+v, want the record's names untouched", rt)
		}
	})
	t.Run("persisted handles carry the record's names", func(t *testing.T) {
		rt := model.VMRuntime{BaseLoop: "/dev/loop2", COWLoop: "/dev/loop5", DMName: "banger-b", DMDev: "/dev/dm-3"}
		got := handles{Tap: "t"}.withDisk(rt)
		if got.BaseLoop != rt.BaseLoop || got.COWLoop != rt.COWLoop || got.DMName != rt.DMName || got.DMDev != rt.DMDev || got.Tap != "t" {
			t.Errorf("withDisk: got %+v", got)
		}
	})
}
