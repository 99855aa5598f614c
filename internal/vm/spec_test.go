package vm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/model"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
)

func TestResolveSpecDefaults(t *testing.T) {
	builtIn := model.VMSpec{
		VCPUCount:             model.DefaultVCPUCount,
		MemoryMiB:             model.DefaultMemoryMiB,
		SystemOverlaySizeByte: model.DefaultSystemOverlaySize,
		WorkDiskSizeBytes:     model.DefaultWorkDiskSize,
	}
	override := model.VMDefaultsOverride{
		VCPUCount:             4,
		MemoryMiB:             4096,
		SystemOverlaySizeByte: 10 * gib,
		WorkDiskSizeBytes:     20 * gib,
		NATEnabled:            true,
	}
	tests := []struct {
		name     string
		req      model.VMCreateRequest
		defaults model.VMDefaultsOverride
		want     model.VMSpec
	}{
		{
			name: "empty request and no overrides get built-in defaults",
			want: builtIn,
		},
		{
			name:     "configured defaults replace built-in ones",
			defaults: override,
			want: model.VMSpec{
				VCPUCount:             4,
				MemoryMiB:             4096,
				SystemOverlaySizeByte: 10 * gib,
				WorkDiskSizeBytes:     20 * gib,
				NATEnabled:            true,
			},
		},
		{
			name:     "partial configured defaults",
			defaults: model.VMDefaultsOverride{MemoryMiB: 1024},
			want: model.VMSpec{
				VCPUCount:             model.DefaultVCPUCount,
				MemoryMiB:             1024,
				SystemOverlaySizeByte: model.DefaultSystemOverlaySize,
				WorkDiskSizeBytes:     model.DefaultWorkDiskSize,
			},
		},
		{
			name: "request beats configured defaults",
			req: model.VMCreateRequest{
				VCPUCount:             1,
				MemoryMiB:             512,
				SystemOverlaySizeByte: 2 * gib,
				WorkDiskSizeBytes:     3 * gib,
			},
			defaults: override,
			want: model.VMSpec{
				VCPUCount:             1,
				MemoryMiB:             512,
				SystemOverlaySizeByte: 2 * gib,
				WorkDiskSizeBytes:     3 * gib,
				NATEnabled:            true, // a request cannot turn a configured NAT default off
			},
		},
		{
			name: "request enables nat",
			req:  model.VMCreateRequest{NATEnabled: true},
			want: model.VMSpec{
				VCPUCount:             model.DefaultVCPUCount,
				MemoryMiB:             model.DefaultMemoryMiB,
				SystemOverlaySizeByte: model.DefaultSystemOverlaySize,
				WorkDiskSizeBytes:     model.DefaultWorkDiskSize,
				NATEnabled:            true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveSpec(tt.req, tt.defaults)
			if err != nil {
				t.Fatalf("resolveSpec: got error %v, want nil", err)
			}
			if got != tt.want {
				t.Errorf("resolveSpec: got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestResolveSpecValidates(t *testing.T) {
	tests := []struct {
		name      string
		req       model.VMCreateRequest
		defaults  model.VMDefaultsOverride
		wantField string
	}{
		{name: "negative vcpu in request", req: model.VMCreateRequest{VCPUCount: -1}, wantField: "vcpu count"},
		{name: "bad configured default", defaults: model.VMDefaultsOverride{MemoryMiB: 64}, wantField: "memory"},
		{name: "request disk too small", req: model.VMCreateRequest{WorkDiskSizeBytes: mib}, wantField: "disk size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := resolveSpec(tt.req, tt.defaults)
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("resolveSpec: got error %v, want an ErrInvalid error", err)
			}
			if !strings.Contains(err.Error(), tt.wantField) {
				t.Errorf("resolveSpec error %q: want it to name %q", err, tt.wantField)
			}
		})
	}
}

func TestValidateSpec(t *testing.T) {
	valid := model.VMSpec{
		VCPUCount:             model.DefaultVCPUCount,
		MemoryMiB:             model.DefaultMemoryMiB,
		SystemOverlaySizeByte: model.DefaultSystemOverlaySize,
		WorkDiskSizeBytes:     model.DefaultWorkDiskSize,
	}
	with := func(f func(*model.VMSpec)) model.VMSpec {
		s := valid
		f(&s)
		return s
	}
	tests := []struct {
		name string
		spec model.VMSpec
		// wantFields are the fields the error names; none means valid.
		wantFields []string
	}{
		{name: "defaults", spec: valid},
		{name: "smallest", spec: model.VMSpec{VCPUCount: 1, MemoryMiB: model.MinMemoryMiB, SystemOverlaySizeByte: 64 * mib, WorkDiskSizeBytes: 64 * mib}},
		{name: "largest", spec: model.VMSpec{VCPUCount: model.MaxVCPUCount, MemoryMiB: model.MaxMemoryMiB, SystemOverlaySizeByte: model.MaxDiskBytes, WorkDiskSizeBytes: model.MaxDiskBytes}},
		{name: "vcpu 0", spec: with(func(s *model.VMSpec) { s.VCPUCount = 0 }), wantFields: []string{"vcpu count 0"}},
		{name: "vcpu negative", spec: with(func(s *model.VMSpec) { s.VCPUCount = -2 }), wantFields: []string{"vcpu count -2"}},
		{name: "vcpu 65", spec: with(func(s *model.VMSpec) { s.VCPUCount = 65 }), wantFields: []string{"vcpu count 65"}},
		{name: "memory 127 MiB", spec: with(func(s *model.VMSpec) { s.MemoryMiB = 127 }), wantFields: []string{"memory 127 MiB"}},
		{name: "memory 0", spec: with(func(s *model.VMSpec) { s.MemoryMiB = 0 }), wantFields: []string{"memory 0 MiB"}},
		{name: "memory over 256 GiB", spec: with(func(s *model.VMSpec) { s.MemoryMiB = 256*1024 + 1 }), wantFields: []string{"memory 262145 MiB"}},
		{name: "work disk under 64 MiB", spec: with(func(s *model.VMSpec) { s.WorkDiskSizeBytes = 64*mib - 1 }), wantFields: []string{"disk size"}},
		{name: "work disk 1 byte", spec: with(func(s *model.VMSpec) { s.WorkDiskSizeBytes = 1 }), wantFields: []string{"disk size 1B: want 64M to 128G"}},
		{name: "work disk 0", spec: with(func(s *model.VMSpec) { s.WorkDiskSizeBytes = 0 }), wantFields: []string{"disk size"}},
		{name: "work disk negative", spec: with(func(s *model.VMSpec) { s.WorkDiskSizeBytes = -gib }), wantFields: []string{"disk size -1G"}},
		{name: "work disk over 128 GiB", spec: with(func(s *model.VMSpec) { s.WorkDiskSizeBytes = model.MaxDiskBytes + 1 }), wantFields: []string{"disk size 137438953473B: want 64M to 128G"}},
		{name: "overlay under 64 MiB", spec: with(func(s *model.VMSpec) { s.SystemOverlaySizeByte = 32 * mib }), wantFields: []string{"system overlay size 32M"}},
		{name: "overlay over 128 GiB", spec: with(func(s *model.VMSpec) { s.SystemOverlaySizeByte = 129 * gib }), wantFields: []string{"system overlay size 129G"}},
		{
			name:       "every bad field reported at once",
			spec:       model.VMSpec{VCPUCount: 65, MemoryMiB: 1, SystemOverlaySizeByte: 1, WorkDiskSizeBytes: 200 * gib},
			wantFields: []string{"vcpu count 65", "memory 1 MiB", "disk size 200G", "system overlay size 1B"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateSpec(tt.spec)
			if len(tt.wantFields) == 0 {
				if err != nil {
					t.Fatalf("validateSpec(%+v): got %v, want nil", tt.spec, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("validateSpec(%+v): got nil, want an error naming %q", tt.spec, tt.wantFields)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid): got false, want true", err)
			}
			for _, f := range tt.wantFields {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("validateSpec error %q: want it to contain %q", err, f)
				}
			}
			// The error tells the allowed range.
			if !strings.Contains(err.Error(), "want ") {
				t.Errorf("validateSpec error %q: want it to say what is allowed", err)
			}
		})
	}
}

// TestValidateSpecDiskNames checks that a bad work disk is not blamed on
// the overlay and the other way round.
func TestValidateSpecDiskNames(t *testing.T) {
	base := model.VMSpec{VCPUCount: 1, MemoryMiB: 1024, SystemOverlaySizeByte: gib, WorkDiskSizeBytes: gib}
	tests := []struct {
		name    string
		spec    model.VMSpec
		want    string
		notWant string
	}{
		{name: "work disk", spec: model.VMSpec{VCPUCount: 1, MemoryMiB: 1024, SystemOverlaySizeByte: gib, WorkDiskSizeBytes: mib}, want: "disk size 1M", notWant: "system overlay"},
		{name: "overlay", spec: model.VMSpec{VCPUCount: 1, MemoryMiB: 1024, SystemOverlaySizeByte: mib, WorkDiskSizeBytes: gib}, want: "system overlay size 1M", notWant: "disk size 1G"},
	}
	if err := validateSpec(base); err != nil {
		t.Fatalf("validateSpec(base): got %v, want nil", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateSpec(tt.spec)
			if err == nil {
				t.Fatalf("validateSpec: got nil, want error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("error %q: want it not to contain %q", err, tt.notWant)
			}
		})
	}
}

func TestCheckImageArtifacts(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rootfs := file("rootfs.ext4")
	kernel := file("vmlinuz")
	initrd := file("initrd.img")
	seed := file("work-seed.ext4")
	subdir := filepath.Join(dir, "a-directory")
	if err := os.Mkdir(subdir, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")

	img := func(f func(*model.Image)) model.Image {
		i := model.Image{Name: "demo", RootfsPath: rootfs, KernelPath: kernel}
		f(&i)
		return i
	}
	tests := []struct {
		name    string
		img     model.Image
		wantErr []string // substrings; nil means no error
		// notInvalid: the error is a host failure, not bad input.
		notInvalid bool
	}{
		{name: "rootfs and kernel only", img: img(func(*model.Image) {})},
		{name: "every artifact", img: img(func(i *model.Image) { i.InitrdPath = initrd; i.WorkSeedPath = seed })},
		{name: "no rootfs path", img: img(func(i *model.Image) { i.RootfsPath = "" }), wantErr: []string{`"demo"`, "no rootfs"}},
		{name: "no kernel path", img: img(func(i *model.Image) { i.KernelPath = "" }), wantErr: []string{`"demo"`, "no kernel"}},
		{name: "rootfs file missing", img: img(func(i *model.Image) { i.RootfsPath = missing }), wantErr: []string{"rootfs", missing}},
		{name: "kernel file missing", img: img(func(i *model.Image) { i.KernelPath = missing }), wantErr: []string{"kernel", missing}},
		{name: "initrd set but missing", img: img(func(i *model.Image) { i.InitrdPath = missing }), wantErr: []string{"initrd", missing}},
		{name: "work seed set but missing", img: img(func(i *model.Image) { i.WorkSeedPath = missing }), wantErr: []string{"work seed", missing}},
		{name: "kernel is a directory", img: img(func(i *model.Image) { i.KernelPath = subdir }), wantErr: []string{"kernel", subdir, "directory"}},
		{name: "kernel path under a regular file", img: img(func(i *model.Image) { i.KernelPath = filepath.Join(rootfs, "vmlinuz") }), wantErr: []string{"kernel", rootfs}, notInvalid: true},
		{name: "rootfs is a directory", img: img(func(i *model.Image) { i.RootfsPath = subdir }), wantErr: []string{"rootfs", subdir, "directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkImageArtifacts(tt.img)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("checkImageArtifacts: got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkImageArtifacts: got nil, want error containing %q", tt.wantErr)
			}
			if got := errors.Is(err, errdefs.ErrInvalid); got == tt.notInvalid {
				t.Errorf("errors.Is(%v, ErrInvalid): got %t, want %t", err, got, !tt.notInvalid)
			}
			for _, sub := range tt.wantErr {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q: want it to contain %q", err, sub)
				}
			}
		})
	}
}

func TestKernelCmdline(t *testing.T) {
	tests := []struct {
		name string
		p    bootParams
		want string
	}{
		{
			name: "guest contract sample",
			p: bootParams{
				GuestIP:  "172.16.0.5",
				Prefix:   "24",
				Gateway:  "172.16.0.1",
				DNS:      "1.1.1.1",
				Hostname: "demo",
				MAC:      "02:ab:cd:ef:01:23",
			},
			want: "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1 " +
				"banger.ip=172.16.0.5/24 banger.gw=172.16.0.1 banger.dns=1.1.1.1 " +
				"banger.hostname=demo banger.mac=02:ab:cd:ef:01:23",
		},
		{
			name: "other subnet",
			p: bootParams{
				GuestIP:  "10.9.0.200",
				Prefix:   "16",
				Gateway:  "10.9.0.1",
				DNS:      "9.9.9.9",
				Hostname: "swift-otter-42",
				MAC:      "02:00:00:00:00:01",
			},
			want: "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1 " +
				"banger.ip=10.9.0.200/16 banger.gw=10.9.0.1 banger.dns=9.9.9.9 " +
				"banger.hostname=swift-otter-42 banger.mac=02:00:00:00:00:01",
		},
		{
			name: "first boot",
			p: bootParams{
				GuestIP:   "172.16.0.9",
				Prefix:    "24",
				Gateway:   "172.16.0.1",
				DNS:       "1.1.1.1",
				Hostname:  "fb",
				MAC:       "02:00:00:00:00:09",
				FirstBoot: true,
			},
			want: "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1 " +
				"banger.ip=172.16.0.9/24 banger.gw=172.16.0.1 banger.dns=1.1.1.1 " +
				"banger.hostname=fb banger.mac=02:00:00:00:00:09 init=/usr/local/sbin/banger-firstboot",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kernelCmdline(tt.p); got != tt.want {
				t.Errorf("kernelCmdline:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
