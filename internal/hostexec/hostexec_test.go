package hostexec

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTools skips the test when a POSIX tool it runs is missing.
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not in PATH: install coreutils/dash to run this test", n)
		}
	}
}

func TestRunStdout(t *testing.T) {
	needTools(t, "sh", "printf")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "plain output", args: []string{"-c", "printf 'hello\\nworld\\n'"}, want: "hello\nworld\n"},
		{name: "no output", args: []string{"-c", "true"}, want: ""},
		{name: "stderr kept out of stdout", args: []string{"-c", "echo noise >&2; printf out"}, want: "out"},
		{name: "arguments passed verbatim", args: []string{"-c", `printf '%s|' "$@"`, "sh", "a b", "", "$HOME", "'q'"}, want: "a b||$HOME|'q'|"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Run(t.Context(), "sh", tt.args...)
			if err != nil {
				t.Fatalf("Run: got error %v, want nil", err)
			}
			if string(got) != tt.want {
				t.Errorf("Run stdout: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRunFailure(t *testing.T) {
	needTools(t, "sh")
	long := strings.Repeat("x", 500)
	tests := []struct {
		name         string
		script       string
		wantCode     int
		wantStderr   string   // exact Error.Stderr
		wantIn       []string // substrings of Error()
		wantNotIn    []string // not in Error()
		wantStdout   string
		maxMsgLength int // 0: no bound checked
	}{
		{
			name:       "exit code and one stderr line",
			script:     "echo 'mkfs: bad thing' >&2; exit 3",
			wantCode:   3,
			wantStderr: "mkfs: bad thing\n",
			wantIn:     []string{"sh: ", "exit status 3", "mkfs: bad thing"},
		},
		{
			name:     "short multi-line stderr kept whole",
			script:   "echo first >&2; echo last >&2; exit 1",
			wantCode: 1,
			wantIn:   []string{"exit status 1", "first", "last"},
		},
		{
			name:      "long stderr reduced to its last line",
			script:    "echo " + long + " >&2; echo 'the real reason' >&2; exit 2",
			wantCode:  2,
			wantIn:    []string{"exit status 2", "the real reason"},
			wantNotIn: []string{long},
		},
		{
			name:         "one huge stderr line is bounded",
			script:       "i=0; while [ $i -lt 200 ]; do printf 'yyyyyyyyyy' >&2; i=$((i+1)); done; printf ' tail-of-line\\n' >&2; exit 4",
			wantCode:     4,
			wantIn:       []string{"exit status 4", "tail-of-line"},
			maxMsgLength: 600,
		},
		{
			name:     "no stderr",
			script:   "exit 7",
			wantCode: 7,
			wantIn:   []string{"sh: exit status 7"},
		},
		{
			name:       "stdout still returned on failure",
			script:     "printf partial; exit 1",
			wantCode:   1,
			wantStdout: "partial",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Run(t.Context(), "sh", "-c", tt.script)
			if err == nil {
				t.Fatal("Run: got nil error, want failure")
			}
			var herr *Error
			if !errors.As(err, &herr) {
				t.Fatalf("errors.As(%T, *Error): got false, want true", err)
			}
			if herr.ExitCode != tt.wantCode {
				t.Errorf("ExitCode: got %d, want %d", herr.ExitCode, tt.wantCode)
			}
			if herr.Name != "sh" {
				t.Errorf("Name: got %q, want %q", herr.Name, "sh")
			}
			if want := []string{"-c", tt.script}; strings.Join(herr.Args, "\x00") != strings.Join(want, "\x00") {
				t.Errorf("Args: got %q, want %q", herr.Args, want)
			}
			if tt.wantStderr != "" && herr.Stderr != tt.wantStderr {
				t.Errorf("Stderr: got %q, want %q", herr.Stderr, tt.wantStderr)
			}
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) {
				t.Errorf("errors.As(%v, *exec.ExitError): got false, want true", err)
			}
			msg := err.Error()
			for _, s := range tt.wantIn {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q: want it to contain %q", msg, s)
				}
			}
			for _, s := range tt.wantNotIn {
				if strings.Contains(msg, s) {
					t.Errorf("error %q: want it not to contain %q", msg, s)
				}
			}
			if tt.maxMsgLength > 0 && len(msg) > tt.maxMsgLength {
				t.Errorf("error length: got %d, want at most %d", len(msg), tt.maxMsgLength)
			}
			if string(out) != tt.wantStdout {
				t.Errorf("stdout: got %q, want %q", out, tt.wantStdout)
			}
		})
	}
}

func TestRunMissingBinary(t *testing.T) {
	_, err := Run(t.Context(), "banger-no-such-tool-xyz", "--help")
	var herr *Error
	if !errors.As(err, &herr) {
		t.Fatalf("errors.As(%v, *Error): got false, want true", err)
	}
	if herr.ExitCode != -1 {
		t.Errorf("ExitCode: got %d, want -1", herr.ExitCode)
	}
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("errors.Is(%v, exec.ErrNotFound): got false, want true", err)
	}
	if !strings.Contains(err.Error(), "banger-no-such-tool-xyz") {
		t.Errorf("error %q: want it to name the tool", err)
	}
}

func TestRunStdin(t *testing.T) {
	needTools(t, "cat", "wc")
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{name: "text", in: []byte("line one\nline two\n"), want: "line one\nline two\n"},
		{name: "binary", in: []byte{0, 1, 2, 0xff, '\n'}, want: "\x00\x01\x02\xff\n"},
		{name: "empty but not nil", in: []byte{}, want: ""},
		{name: "nil is no stdin", in: nil, want: ""},
		{name: "large", in: []byte(strings.Repeat("0123456789", 100_000)), want: strings.Repeat("0123456789", 100_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RunStdin(t.Context(), tt.in, "cat")
			if err != nil {
				t.Fatalf("RunStdin: got error %v, want nil", err)
			}
			if string(got) != tt.want {
				t.Errorf("RunStdin stdout: got %d bytes %.40q, want %d bytes %.40q", len(got), got, len(tt.want), tt.want)
			}
		})
	}
}

func TestRunContext(t *testing.T) {
	needTools(t, "sh", "sleep")
	tests := []struct {
		name    string
		script  string
		timeout time.Duration
		wantErr error
	}{
		{name: "deadline kills a sleeping command", script: "exec sleep 30", timeout: 200 * time.Millisecond, wantErr: context.DeadlineExceeded},
		// sh forks sleep, which holds the stdout and stderr pipes: killing
		// sh alone would leave Run waiting for sleep to finish.
		{name: "deadline kills the command's children", script: "sleep 30; echo done", timeout: 200 * time.Millisecond, wantErr: context.DeadlineExceeded},
		{name: "background child holding the pipes", script: "sleep 30 & wait", timeout: 200 * time.Millisecond, wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()
			start := time.Now()
			_, err := Run(ctx, "sh", "-c", tt.script)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("Run: got nil error, want the command killed")
			}
			if elapsed > 5*time.Second {
				t.Errorf("Run returned after %s, want soon after the %s deadline", elapsed.Round(time.Millisecond), tt.timeout)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("errors.Is(%v, %v): got false, want true", err, tt.wantErr)
			}
			var herr *Error
			if !errors.As(err, &herr) {
				t.Errorf("errors.As(%v, *Error): got false, want true", err)
			}
		})
	}
}

func TestRunCanceledBeforeStart(t *testing.T) {
	needTools(t, "true")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Run(ctx, "true")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a canceled context: got %v, want an error matching context.Canceled", err)
	}
}

func TestLook(t *testing.T) {
	needTools(t, "sh")
	tests := []struct {
		name     string
		tool     string
		pkg      string
		wantErr  []string
		wantPath bool
	}{
		{name: "present", tool: "sh", pkg: "dash", wantPath: true},
		{
			name:    "missing gives install hint",
			tool:    "banger-no-such-tool-xyz",
			pkg:     "banger-tools",
			wantErr: []string{"banger-no-such-tool-xyz not found", "install the banger-tools package", "apt-get install banger-tools"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, err := Look(tt.tool, tt.pkg)
			if tt.wantPath {
				if err != nil {
					t.Fatalf("Look(%q): got error %v, want nil", tt.tool, err)
				}
				if !strings.HasSuffix(path, "/"+tt.tool) {
					t.Errorf("Look(%q): got path %q, want one ending in /%s", tt.tool, path, tt.tool)
				}
				return
			}
			if err == nil {
				t.Fatalf("Look(%q): got path %q, want error", tt.tool, path)
			}
			if path != "" {
				t.Errorf("Look(%q) path: got %q, want empty", tt.tool, path)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q: want it to contain %q", err, s)
				}
			}
		})
	}
}

func TestLookEmptyPath(t *testing.T) {
	t.Setenv("PATH", "")
	if _, err := Look("sh", "dash"); err == nil {
		t.Errorf("Look(sh) with empty PATH: got nil error, want not found")
	}
}

// TestRunDaemonHoldingPipes checks that a descendant that left the
// command's process group and kept its output pipes does not keep Run
// waiting until it exits.
func TestRunDaemonHoldingPipes(t *testing.T) {
	if testing.Short() {
		t.Skipf("waits %s for the pipes; run without -short", waitDelay)
	}
	needTools(t, "sh", "setsid", "sleep")
	pidFile := filepath.Join(t.TempDir(), "daemon.pid")
	t.Cleanup(func() {
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	script := `setsid sh -c 'echo $$ > "$1"; exec sleep 30' sh "$0" &`
	start := time.Now()
	_, err := Run(t.Context(), "sh", "-c", script, pidFile)
	elapsed := time.Since(start)
	if elapsed > waitDelay+3*time.Second {
		t.Errorf("Run returned after %s, want about %s", elapsed.Round(time.Millisecond), waitDelay)
	}
	if !errors.Is(err, exec.ErrWaitDelay) {
		t.Errorf("Run: got error %v, want exec.ErrWaitDelay", err)
	}
}

func TestStderrSummary(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		name   string
		stderr string
		want   string
	}{
		{name: "empty", stderr: "", want: ""},
		{name: "whitespace only", stderr: " \n\t\n", want: ""},
		{name: "trimmed", stderr: "  oops\n\n", want: "oops"},
		{name: "short multi-line kept", stderr: "one\ntwo\n", want: "one\ntwo"},
		{name: "long keeps last line", stderr: long + "\n" + long + "\nlast words\n", want: "last words"},
		{name: "long last line keeps its tail", stderr: strings.Repeat("b", 1000) + "END", want: "..." + strings.Repeat("b", 397) + "END"},
		{name: "tail on a rune boundary", stderr: "x" + strings.Repeat("é", 300), want: "..." + strings.Repeat("é", 200)},
		{name: "tail cut inside a rune stays valid utf-8", stderr: strings.Repeat("é", 300) + "z", want: "..." + strings.Repeat("é", 199) + "z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stderrSummary(tt.stderr); got != tt.want {
				t.Errorf("stderrSummary: got %q (%d bytes), want %q (%d bytes)", got, len(got), tt.want, len(tt.want))
			}
		})
	}
}
