package fctest

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment of the fake Firecracker process (Main).
const (
	EnvSpec       = "BANGER_FAKEFC_SPEC"        // swagger.yaml path; required
	EnvVersion    = "BANGER_FAKEFC_VERSION"     // version it reports, default 1.7.0
	EnvRecord     = "BANGER_FAKEFC_RECORD"      // file that receives one JSON line per request
	EnvIgnoreCAD  = "BANGER_FAKEFC_IGNORE_CAD"  // "1": the guest ignores Ctrl-Alt-Del
	EnvFailPath   = "BANGER_FAKEFC_FAIL_PATH"   // answer 400 to a PUT on this path
	EnvDelayStart = "BANGER_FAKEFC_DELAY_START" // wait this long (Go duration) before serving
	// EnvSpecFD and EnvRecordFD name inherited descriptors that replace
	// EnvSpec and EnvRecord: the fake jailer opens those files before it
	// enters the jail, where their paths do not exist.
	EnvSpecFD   = "BANGER_FAKEFC_SPEC_FD"
	EnvRecordFD = "BANGER_FAKEFC_RECORD_FD"
)

// Recorded is a request the fake received, as it records it.
type Recorded struct {
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body,omitempty"`
	Status int             `json:"status"`
	Error  string          `json:"error,omitempty"`
}

// Server is a fake Firecracker API: it validates every request against
// the specification, enforces the pre-boot and post-boot rules, keeps
// the configuration and answers with spec-shaped bodies.
type Server struct {
	Spec    *Spec
	ID      string
	Version string
	// Record, when set, receives every request after it was answered.
	Record func(Recorded)
	// FailPath makes PUTs on that path fail with 400.
	FailPath string
	// OnCtrlAltDel runs after a SendCtrlAltDel was accepted.
	OnCtrlAltDel func()
	// Console receives the guest's serial output (Firecracker's stdout).
	Console io.Writer

	mu      sync.Mutex
	started bool
	config  map[string]json.RawMessage // path -> last body
	flushes int
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	status, answer, err := s.handle(r.Method, r.URL.Path, body)
	rec := Recorded{Method: r.Method, Path: r.URL.Path, Status: status}
	if len(body) > 0 && json.Valid(body) {
		rec.Body = body
	}
	if err != nil {
		rec.Error = err.Error()
		answer = map[string]string{"fault_message": err.Error()}
	}
	if s.Record != nil {
		s.Record(rec)
	}
	if answer == nil {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(answer)
}

// handle answers one request: status, body (nil for none) and the fault.
func (s *Server) handle(method, path string, body []byte) (int, any, error) {
	op, err := s.Spec.ValidateRequest(method, path, body)
	if errors.Is(err, ErrNoRoute) {
		if strings.Contains(err.Error(), "method not allowed") {
			return http.StatusMethodNotAllowed, nil, err
		}
		return http.StatusBadRequest, nil, err
	}
	if err != nil {
		return http.StatusBadRequest, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.config == nil {
		s.config = make(map[string]json.RawMessage)
	}
	if op.PreBootOnly() && s.started {
		return http.StatusBadRequest, nil, fmt.Errorf("the requested operation (%s %s) is not supported after starting the microVM", method, op.Template)
	}
	if op.PostBootOnly() && !s.started {
		return http.StatusBadRequest, nil, fmt.Errorf("the requested operation (%s %s) is not supported before starting the microVM", method, op.Template)
	}
	if method == "PUT" && path == s.FailPath {
		return http.StatusBadRequest, nil, fmt.Errorf("injected failure on %s", path)
	}
	switch {
	case method == "GET" && path == "/":
		state := "Not started"
		if s.started {
			state = "Running"
		}
		return http.StatusOK, map[string]string{"app_name": "Firecracker", "id": s.ID, "state": state, "vmm_version": s.Version}, nil
	case method == "GET" && path == "/version":
		return http.StatusOK, map[string]string{"firecracker_version": s.Version}, nil
	case method == "PUT" && (path == "/logger" || path == "/metrics"):
		if _, done := s.config[path]; done {
			return http.StatusBadRequest, nil, fmt.Errorf("%s was already configured", path)
		}
		if err := s.checkFile(path, body); err != nil {
			return http.StatusBadRequest, nil, err
		}
	case method == "PUT" && path == "/actions":
		var a struct {
			ActionType string `json:"action_type"`
		}
		json.Unmarshal(body, &a)
		return s.action(a.ActionType)
	case method == "PUT" && path == "/boot-source":
		var b struct {
			Kernel string `json:"kernel_image_path"`
			Initrd string `json:"initrd_path"`
		}
		json.Unmarshal(body, &b)
		// Firecracker opens both files when it takes the boot source.
		for _, p := range []string{b.Kernel, b.Initrd} {
			if err := openable(p, os.O_RDONLY); err != nil {
				return http.StatusBadRequest, nil, fmt.Errorf("boot source: %w", err)
			}
		}
	case method == "PUT" && strings.HasPrefix(path, "/drives/"):
		var d struct {
			DriveID    string `json:"drive_id"`
			PathOnHost string `json:"path_on_host"`
			ReadOnly   bool   `json:"is_read_only"`
		}
		json.Unmarshal(body, &d)
		if "/drives/"+d.DriveID != path {
			return http.StatusBadRequest, nil, fmt.Errorf("drive id %q in the body does not match the path %s", d.DriveID, path)
		}
		// Firecracker opens the backing file when it takes the drive,
		// read-write unless the drive is read-only.
		flags := os.O_RDWR
		if d.ReadOnly {
			flags = os.O_RDONLY
		}
		if err := openable(d.PathOnHost, flags); err != nil {
			return http.StatusBadRequest, nil, fmt.Errorf("drive %s: %w", d.DriveID, err)
		}
	case method == "PUT" && strings.HasPrefix(path, "/network-interfaces/"):
		var n struct {
			IfaceID string `json:"iface_id"`
		}
		json.Unmarshal(body, &n)
		if "/network-interfaces/"+n.IfaceID != path {
			return http.StatusBadRequest, nil, fmt.Errorf("iface id %q in the body does not match the path %s", n.IfaceID, path)
		}
	case method == "PUT" && path == "/vsock":
		var v struct {
			UDSPath string `json:"uds_path"`
		}
		json.Unmarshal(body, &v)
		if err := listenVsock(v.UDSPath); err != nil {
			return http.StatusBadRequest, nil, err
		}
	}
	if method == "PUT" {
		s.config[path] = body
	}
	return http.StatusNoContent, nil, nil
}

// checkFile makes sure this process can open the logger or metrics
// file, as Firecracker opens it (without creating it) when configured.
func (s *Server) checkFile(path string, body []byte) error {
	var b map[string]any
	json.Unmarshal(body, &b)
	key := "log_path"
	if path == "/metrics" {
		key = "metrics_path"
	}
	p, _ := b[key].(string)
	if err := openable(p, os.O_RDWR|syscall.O_NONBLOCK); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// openable opens path with flags and closes it; "" is no file.
func openable(path string, flags int) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

func (s *Server) action(action string) (int, any, error) {
	switch action {
	case "InstanceStart":
		if s.started {
			return http.StatusBadRequest, nil, errors.New("the microVM is already running")
		}
		if err := s.bootable(); err != nil {
			return http.StatusBadRequest, nil, err
		}
		s.started = true
		if s.Console != nil {
			fmt.Fprintln(s.Console, "[    0.000000] Linux version 6.1.0-fake (banger fake firecracker)")
		}
	case "SendCtrlAltDel":
		if !s.started {
			return http.StatusBadRequest, nil, errors.New("SendCtrlAltDel is not supported before starting the microVM")
		}
		if s.OnCtrlAltDel != nil {
			go s.OnCtrlAltDel()
		}
	case "FlushMetrics":
		if err := s.flushMetrics(); err != nil {
			return http.StatusBadRequest, nil, err
		}
	}
	return http.StatusNoContent, nil, nil
}

// bootable checks what InstanceStart needs: a boot source whose files
// exist, and drive files that exist.
func (s *Server) bootable() error {
	bs, ok := s.config["/boot-source"]
	if !ok {
		return errors.New("cannot start microvm without a boot source")
	}
	var b struct {
		Kernel string `json:"kernel_image_path"`
		Initrd string `json:"initrd_path"`
	}
	json.Unmarshal(bs, &b)
	for _, p := range []string{b.Kernel, b.Initrd} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("boot source: %w", err)
		}
	}
	for path, body := range s.config {
		if !strings.HasPrefix(path, "/drives/") {
			continue
		}
		var d struct {
			PathOnHost string `json:"path_on_host"`
		}
		json.Unmarshal(body, &d)
		if _, err := os.Stat(d.PathOnHost); err != nil {
			return fmt.Errorf("drive %s: %w", path, err)
		}
	}
	return nil
}

func (s *Server) flushMetrics() error {
	body, ok := s.config["/metrics"]
	if !ok {
		return nil // Firecracker ignores a flush with no metrics configured
	}
	var m struct {
		Path string `json:"metrics_path"`
	}
	json.Unmarshal(body, &m)
	s.flushes++
	sample := map[string]any{
		"utc_timestamp_ms": time.Now().UnixMilli(),
		"api_server":       map[string]any{"process_startup_time_us": 1000},
		"vcpu":             map[string]any{"exit_io_in": s.flushes * 10},
		"block":            map[string]any{"read_bytes": s.flushes * 4096, "write_bytes": 512},
		"net":              map[string]any{"rx_bytes_count": 100, "tx_bytes_count": 200},
	}
	line, _ := json.Marshal(sample)
	f, err := os.OpenFile(m.Path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(line, '\n'))
	return err
}

// listenVsock serves Firecracker's host side of vsock at path: a
// connection sends "CONNECT <port>\n", gets "OK <n>\n" and then an echo.
func listenVsock(path string) error {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("vsock: %w", err)
	}
	go func() {
		for n := 1; ; n++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(conn net.Conn, n int) {
				defer conn.Close()
				line, err := bufio.NewReader(conn).ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "CONNECT ") {
					return
				}
				fmt.Fprintf(conn, "OK %d\n", 1073741824+n)
				io.Copy(conn, conn)
			}(conn, n)
		}
	}()
	return nil
}

// Main runs a fake Firecracker process with Firecracker's command line
// (--api-sock, --id, --version; the jailer's --start-time-* are
// accepted) and the environment above. It returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("firecracker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	apiSock := fs.String("api-sock", "/run/firecracker.socket", "api socket")
	id := fs.String("id", "anonymous-instance", "instance id")
	showVersion := fs.Bool("version", false, "print the version")
	fs.String("start-time-us", "", "")
	fs.String("start-time-cpu-us", "", "")
	fs.String("parent-cpu-time-us", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	version := os.Getenv(EnvVersion)
	if version == "" {
		version = "1.7.0"
	}
	if *showVersion {
		fmt.Fprintf(stdout, "Firecracker v%s\n\n", version)
		return 0
	}
	if d, err := time.ParseDuration(os.Getenv(EnvDelayStart)); err == nil {
		time.Sleep(d)
	}
	shape := ShapeAPI15
	if v, err := strconv.Atoi(strings.Split(version, ".")[0]); err == nil && v == 1 {
		if minor, _ := strconv.Atoi(strings.Split(version+".0", ".")[1]); minor < 5 {
			shape = ShapeAPI10
		}
	}
	spec, err := loadSpecFromEnv(shape)
	if err != nil {
		fmt.Fprintf(stderr, "fake firecracker: %v\n", err)
		return 1
	}
	srv := &Server{Spec: spec, ID: *id, Version: version, FailPath: os.Getenv(EnvFailPath), Console: stdout}
	if os.Getenv(EnvIgnoreCAD) != "1" {
		srv.OnCtrlAltDel = func() {
			time.Sleep(50 * time.Millisecond)
			fmt.Fprintln(stdout, "reboot: Power down")
			os.Exit(0)
		}
	}
	record, err := inherited(EnvRecordFD)
	if err != nil {
		fmt.Fprintf(stderr, "fake firecracker: %v\n", err)
		return 1
	}
	if path := os.Getenv(EnvRecord); path != "" || record != nil {
		var mu sync.Mutex
		srv.Record = func(r Recorded) {
			mu.Lock()
			defer mu.Unlock()
			line, _ := json.Marshal(r)
			if record != nil {
				record.Write(append(line, '\n'))
				return
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				return
			}
			defer f.Close()
			f.Write(append(line, '\n'))
		}
	}
	os.Remove(*apiSock)
	ln, err := net.Listen("unix", *apiSock)
	if err != nil {
		fmt.Fprintf(stderr, "fake firecracker: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "Running Firecracker v%s\n", version)
	if err := http.Serve(ln, srv); err != nil {
		fmt.Fprintf(stderr, "fake firecracker: %v\n", err)
		return 1
	}
	return 0
}

// loadSpecFromEnv loads the specification from the descriptor EnvSpecFD
// names, else from the file EnvSpec names.
func loadSpecFromEnv(shape Shape) (*Spec, error) {
	f, err := inherited(EnvSpecFD)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return Load(os.Getenv(EnvSpec), shape)
	}
	defer f.Close()
	return LoadReader(f, "inherited descriptor "+os.Getenv(EnvSpecFD), shape)
}

// inherited returns the descriptor the environment variable env names,
// nil when it is unset.
func inherited(env string) (*os.File, error) {
	v := os.Getenv(env)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q: not an inherited descriptor", env, v)
	}
	return os.NewFile(uintptr(fd), env), nil
}

// ReadRecord reads the requests a fake recorded in the file at path.
func ReadRecord(path string) ([]Recorded, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Recorded
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var r Recorded
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
