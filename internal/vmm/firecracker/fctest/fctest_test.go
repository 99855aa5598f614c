package fctest

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadSpec(t *testing.T, shape Shape) *Spec {
	t.Helper()
	path, err := SDKSpecPath()
	if err != nil {
		t.Fatalf("find the sdk's swagger.yaml: %v", err)
	}
	s, err := Load(path, shape)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSDKSpecIsAPI10(t *testing.T) {
	if s := loadSpec(t, ShapeAPI10); s.Version != "1.0.0" {
		t.Errorf("got api version %q, want 1.0.0 (firecracker-go-sdk v1.0.0)", s.Version)
	}
}

// TestValidatorRejects proves the validator can fail: each body breaks
// one rule the specification states.
func TestValidatorRejects(t *testing.T) {
	tests := []struct {
		name         string
		shape        Shape
		method, path string
		body         string
		wantErr      string
	}{
		{name: "unknown path", method: "PUT", path: "/nope", body: `{}`, wantErr: "no such api operation"},
		{name: "method not allowed", method: "DELETE", path: "/drives/x", wantErr: "method not allowed"},
		{name: "missing required", method: "PUT", path: "/boot-source", body: `{"boot_args":"x"}`, wantErr: "kernel_image_path"},
		{name: "wrong type", method: "PUT", path: "/machine-config", body: `{"vcpu_count":"2","mem_size_mib":128}`, wantErr: "vcpu_count"},
		{name: "above maximum", method: "PUT", path: "/machine-config", body: `{"vcpu_count":33,"mem_size_mib":128}`, wantErr: "vcpu_count"},
		{name: "bad enum", method: "PUT", path: "/actions", body: `{"action_type":"Reboot"}`, wantErr: "action_type"},
		{name: "unknown field", method: "PUT", path: "/vsock", body: `{"guest_cid":3,"uds_path":"/v","cid":3}`, wantErr: `unknown field "cid"`},
		{name: "cid below minimum", method: "PUT", path: "/vsock", body: `{"guest_cid":2,"uds_path":"/v"}`, wantErr: "guest_cid"},
		{name: "drive without is_read_only in api 1.0", method: "PUT", path: "/drives/a", body: `{"drive_id":"a","path_on_host":"/x","is_root_device":false}`, wantErr: "is_read_only"},
		{name: "logger module in api 1.0", method: "PUT", path: "/logger", body: `{"log_path":"/l","module":"api"}`, wantErr: `unknown field "module"`},
		{name: "logger level Trace in api 1.0", method: "PUT", path: "/logger", body: `{"log_path":"/l","level":"Trace"}`, wantErr: "level"},
		{name: "huge pages in api 1.0", method: "PUT", path: "/machine-config", body: `{"vcpu_count":1,"mem_size_mib":128,"huge_pages":"2M"}`, wantErr: `unknown field "huge_pages"`},
		{name: "bad enum in api 1.5", shape: ShapeAPI15, method: "PUT", path: "/logger", body: `{"level":"Verbose"}`, wantErr: "level"},
		{name: "body missing", method: "PUT", path: "/actions", wantErr: "body required"},
		{name: "body not json", method: "PUT", path: "/actions", body: `{`, wantErr: "not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := loadSpec(t, tt.shape)
			_, err := s.ValidateRequest(tt.method, tt.path, []byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got err %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestAPI15Shape: what API 1.0 forbids and 1.5 allows.
func TestAPI15Shape(t *testing.T) {
	s := loadSpec(t, ShapeAPI15)
	for _, c := range []struct{ path, body string }{
		{"/logger", `{"level":"Trace","module":"api_server"}`},
		{"/drives/a", `{"drive_id":"a","is_root_device":false,"socket":"/vhost.sock"}`},
		{"/machine-config", `{"vcpu_count":2,"mem_size_mib":256,"huge_pages":"2M"}`},
	} {
		if _, err := s.ValidateRequest("PUT", c.path, []byte(c.body)); err != nil {
			t.Errorf("PUT %s %s: got %v, want valid in api 1.5", c.path, c.body, err)
		}
	}
}

func do(t *testing.T, srv *Server, method, path, body string) int {
	t.Helper()
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	if err := srv.Spec.ValidateResponse(method, path, w.Code, w.Body.Bytes()); err != nil {
		t.Errorf("%s %s: the fake's answer breaks the spec: %v", method, path, err)
	}
	return w.Code
}

// TestServerOrdering checks the fake's rules: configuration before
// InstanceStart only, post-boot operations and Ctrl-Alt-Del after it
// only, InstanceStart once and only with a boot source whose files exist.
func TestServerOrdering(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	os.WriteFile(kernel, []byte("k"), 0o644)
	srv := &Server{Spec: loadSpec(t, ShapeAPI15), ID: "vm1", Version: "1.7.0"}
	steps := []struct {
		name         string
		method, path string
		body         string
		want         int
	}{
		{"info before boot", "GET", "/", "", http.StatusOK},
		{"post-boot patch before boot", "PATCH", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/x"}`, http.StatusBadRequest},
		{"ctrl-alt-del before boot", "PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`, http.StatusBadRequest},
		{"start without boot source", "PUT", "/actions", `{"action_type":"InstanceStart"}`, http.StatusBadRequest},
		// Firecracker opens the kernel, and a drive's file, when it takes them.
		{"boot source with missing kernel", "PUT", "/boot-source", `{"kernel_image_path":"/nonexistent"}`, http.StatusBadRequest},
		{"start after a refused boot source", "PUT", "/actions", `{"action_type":"InstanceStart"}`, http.StatusBadRequest},
		{"drive with missing file", "PUT", "/drives/a", `{"drive_id":"a","path_on_host":"/nonexistent","is_root_device":false,"is_read_only":true}`, http.StatusBadRequest},
		{"logger with missing file", "PUT", "/logger", `{"log_path":"/nonexistent"}`, http.StatusBadRequest},
		{"boot source", "PUT", "/boot-source", `{"kernel_image_path":"` + kernel + `"}`, http.StatusNoContent},
		{"drive id mismatch", "PUT", "/drives/a", `{"drive_id":"b","path_on_host":"` + kernel + `","is_root_device":false,"is_read_only":true}`, http.StatusBadRequest},
		{"machine config", "PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256}`, http.StatusNoContent},
		{"start", "PUT", "/actions", `{"action_type":"InstanceStart"}`, http.StatusNoContent},
		{"start twice", "PUT", "/actions", `{"action_type":"InstanceStart"}`, http.StatusBadRequest},
		{"pre-boot put after boot", "PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256}`, http.StatusBadRequest},
		{"pre-boot vsock after boot", "PUT", "/vsock", `{"guest_cid":3,"uds_path":"/v"}`, http.StatusBadRequest},
		{"ctrl-alt-del after boot", "PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`, http.StatusNoContent},
		{"invalid body after boot", "PUT", "/actions", `{"action_type":"Halt"}`, http.StatusBadRequest},
	}
	for _, s := range steps {
		if got := do(t, srv, s.method, s.path, s.body); got != s.want {
			t.Errorf("%s: %s %s: got status %d, want %d", s.name, s.method, s.path, got, s.want)
		}
	}
}
