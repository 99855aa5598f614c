package firecracker

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/firecracker-microvm/firecracker-go-sdk/client/models"
	"github.com/go-openapi/strfmt"

	"banger/internal/errdefs"
	"banger/internal/vmm"
	"banger/internal/vmm/firecracker/fctest"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		name, out string
		want      Version
		wantErr   bool
	}{
		{name: "1.7", out: "Firecracker v1.7.0\n\n", want: Version{1, 7, 0}},
		{name: "1.5 with snapshot versions", out: "Firecracker v1.5.1\n\nSupported snapshot data format versions: v1.0.0, v1.1.0\n", want: Version{1, 5, 1}},
		{name: "jailer", out: "Jailer v1.10.1\n", want: Version{1, 10, 1}},
		{name: "dev build", out: "Firecracker v1.9.0-dev\n", want: Version{1, 9, 0}},
		{name: "garbage", out: "firecracker: unknown option\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVersion(tt.out)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %v, %v, want %v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if !(Version{1, 4, 9}).Less(MinVersion) || (Version{1, 5, 0}).Less(MinVersion) || (Version{2, 0, 0}).Less(MinVersion) {
		t.Errorf("got a wrong order around the minimum version %v", MinVersion)
	}
}

// fullSpec uses every optional device: initrd, two disks (one read-only),
// network and vsock.
func fullSpec() vmm.Spec {
	return vmm.Spec{
		ID: "0123abcd", Name: "demo", VCPUs: 2, MemoryMiB: 2048,
		Kernel: "/img/vmlinux", Initrd: "/img/initrd.img",
		Cmdline: "console=ttyS0 root=/dev/vda ip=172.16.0.5::172.16.0.1:255.255.255.0::eth0:off",
		Disks: []vmm.Disk{
			{ID: "system", Path: "/vms/demo/system.img", Format: "raw"},
			{ID: "work", Path: "/vms/demo/work.ext4", Format: "raw"},
			{ID: "seed", Path: "/img/seed.ext4", Format: "raw", ReadOnly: true},
		},
		TapDevice: "tap-fc0", MAC: "02:ab:cd:ef:01:23",
		Dir: "/vms/demo", AgentSocket: "/vms/demo/agent.sock", VSockCID: 7,
	}
}

func layoutFor(spec vmm.Spec) Layout {
	l := Layout{Kernel: spec.Kernel, Initrd: spec.Initrd, Vsock: spec.AgentSocket,
		Log: spec.Dir + "/" + logName, Metrics: spec.Dir + "/" + metricsName}
	for _, d := range spec.Disks {
		l.Drives = append(l.Drives, d.Path)
	}
	return l
}

// minimalSpec has no optional device.
func minimalSpec() vmm.Spec {
	s := fullSpec()
	s.Initrd, s.TapDevice, s.MAC, s.AgentSocket, s.VSockCID = "", "", "", "", 0
	s.Disks = s.Disks[:1]
	return s
}

func TestConfigRequests(t *testing.T) {
	spec := fullSpec()
	reqs, err := ConfigRequests(spec, layoutFor(spec), Version{1, 7, 0})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ method, path, body string }{
		{"PUT", "/logger", `{"log_path":"/vms/demo/firecracker.log","level":"Info","show_level":true,"show_log_origin":false}`},
		{"PUT", "/metrics", `{"metrics_path":"/vms/demo/firecracker-metrics.json"}`},
		{"PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":2048}`},
		{"PUT", "/boot-source", `{"kernel_image_path":"/img/vmlinux","boot_args":"` + spec.Cmdline + ` reboot=k","initrd_path":"/img/initrd.img"}`},
		{"PUT", "/drives/system", `{"drive_id":"system","path_on_host":"/vms/demo/system.img","is_root_device":false,"is_read_only":false,"cache_type":"Writeback"}`},
		{"PUT", "/drives/work", `{"drive_id":"work","path_on_host":"/vms/demo/work.ext4","is_root_device":false,"is_read_only":false,"cache_type":"Writeback"}`},
		{"PUT", "/drives/seed", `{"drive_id":"seed","path_on_host":"/img/seed.ext4","is_root_device":false,"is_read_only":true,"cache_type":"Writeback"}`},
		{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap-fc0","guest_mac":"02:ab:cd:ef:01:23"}`},
		{"PUT", "/vsock", `{"guest_cid":7,"uds_path":"/vms/demo/agent.sock"}`},
	}
	if len(reqs) != len(want) {
		t.Fatalf("got %d requests, want %d", len(reqs), len(want))
	}
	for i, w := range want {
		got, _ := json.Marshal(reqs[i].Body)
		if reqs[i].Method != w.method || reqs[i].Path != w.path || string(got) != w.body {
			t.Errorf("request %d: got %s %s %s, want %s %s %s", i, reqs[i].Method, reqs[i].Path, got, w.method, w.path, w.body)
		}
	}
}

func TestConfigRequestsErrors(t *testing.T) {
	spec := fullSpec()
	spec.VSockCID = 2
	if _, err := ConfigRequests(spec, layoutFor(spec), MinVersion); !errdefs.IsInvalid(err) {
		t.Errorf("cid 2: got %v, want invalid argument", err)
	}
	l := layoutFor(spec)
	l.Drives = l.Drives[:1]
	if _, err := ConfigRequests(fullSpec(), l, MinVersion); err == nil {
		t.Errorf("fewer drive paths than disks: got no error, want one")
	}
}

func TestDriveIDs(t *testing.T) {
	got := vmm.DiskIDs([]vmm.Disk{{ID: "system"}, {ID: "work-disk"}, {ID: "system"}, {ID: ""}, {ID: "disk1"}}, driveIDRE)
	want := []string{"system", "disk1", "disk2", "disk3", "disk4"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// allRequests is every request the driver sends for spec: configuration
// (every optional device included in the full spec), start, graceful stop,
// metrics flush and the instance information query.
func allRequests(t *testing.T, spec vmm.Spec, v Version) []Request {
	t.Helper()
	reqs, err := ConfigRequests(spec, layoutFor(spec), v)
	if err != nil {
		t.Fatal(err)
	}
	return append(reqs, StartRequest(), CtrlAltDelRequest(), FlushMetricsRequest(), InfoRequest())
}

// TestRequestsConformToSpec validates every request body the driver
// builds against Firecracker's API specification, read from the SDK
// module: the API 1.0 definitions as shipped, and the same definitions
// edited to their Firecracker 1.5+ shape (fctest.ShapeAPI15 lists the
// changes). Unknown fields are errors, as in Firecracker.
func TestRequestsConformToSpec(t *testing.T) {
	path, err := fctest.SDKSpecPath()
	if err != nil {
		t.Fatal(err)
	}
	shapes := []struct {
		name    string
		shape   fctest.Shape
		version Version
	}{
		{name: "api 1.0 shape", shape: fctest.ShapeAPI10, version: Version{1, 0, 0}},
		{name: "api 1.5+ shape at 1.5", shape: fctest.ShapeAPI15, version: Version{1, 5, 0}},
		{name: "api 1.5+ shape at 1.7", shape: fctest.ShapeAPI15, version: Version{1, 7, 0}},
		// A 1.5+ Firecracker must also accept what the driver sends:
		// its definitions only relaxed what 1.0 required.
		{name: "1.7 requests on api 1.0", shape: fctest.ShapeAPI10, version: Version{1, 7, 0}},
	}
	specs := map[string]vmm.Spec{"full": fullSpec(), "minimal": minimalSpec()}
	for _, sh := range shapes {
		s, err := fctest.Load(path, sh.shape)
		if err != nil {
			t.Fatal(err)
		}
		for specName, spec := range specs {
			t.Run(sh.name+"/"+specName, func(t *testing.T) {
				for _, r := range allRequests(t, spec, sh.version) {
					var body []byte
					if r.Body != nil {
						body, _ = json.Marshal(r.Body)
					}
					if _, err := s.ValidateRequest(r.Method, r.Path, body); err != nil {
						t.Errorf("got %v, want %s %s %s valid", err, r.Method, r.Path, body)
					}
				}
			})
		}
	}
}

// TestLoggerLevelByVersion: the one field whose value follows the
// version (each version's default level).
func TestLoggerLevelByVersion(t *testing.T) {
	for _, tt := range []struct {
		v    Version
		want string
	}{{Version{1, 0, 0}, "Warning"}, {Version{1, 4, 2}, "Warning"}, {Version{1, 5, 0}, "Info"}, {Version{1, 10, 1}, "Info"}} {
		reqs, _ := ConfigRequests(minimalSpec(), layoutFor(minimalSpec()), tt.v)
		if got := reqs[0].Body.(Logger).Level; got != tt.want {
			t.Errorf("version %v: got level %q, want %q", tt.v, got, tt.want)
		}
	}
}

// TestRequestsDecodeIntoSDKModels cross-checks the bodies with the SDK's
// generated models: each decodes without loss and passes the model's own
// validation.
func TestRequestsDecodeIntoSDKModels(t *testing.T) {
	type validator interface{ Validate(strfmt.Registry) error }
	models := map[string]func() validator{
		"/logger":         func() validator { return new(models.Logger) },
		"/metrics":        func() validator { return new(models.Metrics) },
		"/machine-config": func() validator { return new(models.MachineConfiguration) },
		"/boot-source":    func() validator { return new(models.BootSource) },
		"/drives/":        func() validator { return new(models.Drive) },
		"/network-":       func() validator { return new(models.NetworkInterface) },
		"/vsock":          func() validator { return new(models.Vsock) },
		"/actions":        func() validator { return new(models.InstanceActionInfo) },
	}
	for _, r := range allRequests(t, fullSpec(), Version{1, 7, 0}) {
		if r.Body == nil {
			continue
		}
		var mk func() validator
		for prefix, f := range models {
			if strings.HasPrefix(r.Path, prefix) {
				mk = f
			}
		}
		if mk == nil {
			t.Errorf("%s %s: no sdk model to check it with", r.Method, r.Path)
			continue
		}
		body, _ := json.Marshal(r.Body)
		m := mk()
		if err := json.Unmarshal(body, m); err != nil {
			t.Errorf("%s %s: decode into %T: %v", r.Method, r.Path, m, err)
			continue
		}
		if err := m.Validate(strfmt.Default); err != nil {
			t.Errorf("%s %s: %T.Validate: %v", r.Method, r.Path, m, err)
		}
		again, _ := json.Marshal(m)
		var a, b map[string]any
		json.Unmarshal(body, &a)
		json.Unmarshal(again, &b)
		for k := range a {
			if _, ok := b[k]; !ok {
				t.Errorf("%s %s: field %q lost through %T", r.Method, r.Path, k, m)
			}
		}
	}
}
