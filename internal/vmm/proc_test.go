package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// statLine builds a /proc/PID/stat line with 52 fields as Linux writes
// it; the fields banger reads are set, the others are plausible values.
func statLine(pid int, comm string, state byte, utime, stime, start, vsz, rss uint64) string {
	// Fields 4 to 13: ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt.
	// Fields 16 to 21: cutime cstime priority nice num_threads itrealvalue.
	// Fields 25 to 52: rsslim and on.
	return fmt.Sprintf("%d (%s) %c 1 %d %d 0 -1 4194304 812 0 3 0 %d %d 0 0 20 0 1 0 %d %d %d "+
		"18446744073709551615 94910204231680 94910204251561 140724140714480 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0 "+
		"94910204267568 94910204269184 94911042998272 140724140718776 140724140718796 140724140718796 140724140720107 0\n",
		pid, comm, state, pid, pid, utime, stime, start, vsz, rss)
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name string
		data string
		want ProcStat
	}{
		{
			name: "line read from a running cat",
			data: "542 (cat) R 537 537 27752 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 3122037 3133440 411 18446744073709551615 94910204231680 94910204251561 140724140714480 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94910204267568 94910204269184 94911042998272 140724140718776 140724140718796 140724140718796 140724140720107 0\n",
			want: ProcStat{State: 'R', StartTime: 3122037, VSZ: 3133440, RSSPages: 411},
		},
		{
			name: "qemu",
			data: statLine(4242, "qemu-system-x86", 'S', 1500, 300, 987654, 1<<31, 65536),
			want: ProcStat{State: 'S', UTime: 1500, STime: 300, StartTime: 987654, VSZ: 1 << 31, RSSPages: 65536},
		},
		{
			name: "comm with spaces",
			data: statLine(7, "tmux: server", 'S', 1, 2, 3, 4, 5),
			want: ProcStat{State: 'S', UTime: 1, STime: 2, StartTime: 3, VSZ: 4, RSSPages: 5},
		},
		{
			name: "comm with parentheses and spaces",
			data: statLine(123, "a) b) c", 'S', 10, 20, 30, 40, 50),
			want: ProcStat{State: 'S', UTime: 10, STime: 20, StartTime: 30, VSZ: 40, RSSPages: 50},
		},
		{
			// A name made to look like the fields after it: the last ')'
			// still ends it, as the kernel writes only numbers after it.
			name: "comm that imitates stat fields",
			data: statLine(99, ") Z 1 1 1 (", 'S', 0, 0, 777, 0, 0),
			want: ProcStat{State: 'S', StartTime: 777},
		},
		{
			name: "empty comm",
			data: statLine(5, "", 'D', 0, 0, 11, 0, 0),
			want: ProcStat{State: 'D', StartTime: 11},
		},
		{
			name: "zombie",
			data: statLine(6, "defunct", 'Z', 7, 8, 12, 0, 0),
			want: ProcStat{State: 'Z', UTime: 7, STime: 8, StartTime: 12},
		},
		{
			name: "start time beyond 32 bits",
			data: statLine(8, "long", 'S', 0, 0, 1<<40+1, 0, 0),
			want: ProcStat{State: 'S', StartTime: 1<<40 + 1},
		},
		{
			// Exactly 22 fields after the name, through rss (field 24).
			name: "fields end at rss",
			data: "1 (init) S 0 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 42 1024 3",
			want: ProcStat{State: 'S', UTime: 5, STime: 6, StartTime: 42, VSZ: 1024, RSSPages: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcStat(tt.data)
			if err != nil {
				t.Fatalf("ParseProcStat: got error %v, want %+v", err, tt.want)
			}
			if got != tt.want {
				t.Errorf("ParseProcStat: got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseProcStatMalformed(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"no closing parenthesis", "123 (sleep S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22"},
		{"ends at the name", "123 (sleep)"},
		{"ends one byte after the name", "123 (sleep) "},
		{"state only", "123 (sleep) S"},
		{"one field short of rss", "1 (init) S 0 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 42 1024"},
		{"fields before the name only", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 (x)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcStat(tt.data)
			if err == nil {
				t.Fatalf("ParseProcStat(%q): got %+v, want an error", tt.data, got)
			}
			if !strings.HasPrefix(err.Error(), "parse proc stat") {
				t.Errorf("error: got %q, want it to start with %q", err, "parse proc stat")
			}
		})
	}
}

func TestReadProcStat(t *testing.T) {
	t.Run("own process", func(t *testing.T) {
		got, err := ReadProcStat(os.Getpid())
		if err != nil {
			t.Fatalf("ReadProcStat(self): got %v, want nil", err)
		}
		if got.State != 'R' && got.State != 'S' {
			t.Errorf("state: got %q, want R or S", got.State)
		}
		if got.StartTime == 0 || got.VSZ == 0 || got.RSSPages == 0 {
			t.Errorf("got %+v, want non-zero start time, vsz and rss", got)
		}
		again, err := ReadProcStat(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if again.StartTime != got.StartTime {
			t.Errorf("start time on a second read: got %d, want %d", again.StartTime, got.StartTime)
		}
	})
	t.Run("no such process", func(t *testing.T) {
		_, err := ReadProcStat(deadPID(t))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("ReadProcStat(dead pid): got %v, want an error wrapping os.ErrNotExist", err)
		}
	})
}

// child runs `sleep 30`, reaped by a goroutine like a VMM is by its
// parent; it returns the process's handle and a channel closed at exit,
// which then holds how it ended.
func child(t *testing.T) (Handle, *exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	st, err := ReadProcStat(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("read stat of sleep: %v", err)
	}
	return Handle{Driver: "test", PID: cmd.Process.Pid, StartTime: st.StartTime}, cmd, done
}

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run true: %v", err)
	}
	return cmd.Process.Pid
}

func running(done <-chan struct{}) bool {
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func TestAlive(t *testing.T) {
	h, _, done := child(t)
	dead := deadPID(t)
	tests := []struct {
		name string
		h    Handle
		want bool
	}{
		{"same process", h, true},
		{"reused pid: other start time", Handle{PID: h.PID, StartTime: h.StartTime + 1}, false},
		{"reused pid: earlier start time", Handle{PID: h.PID, StartTime: h.StartTime - 1}, false},
		// Without a recorded start time the pid cannot be verified.
		{"no start time recorded", Handle{PID: h.PID}, false},
		{"dead pid", Handle{PID: dead, StartTime: h.StartTime}, false},
		{"dead pid without start time", Handle{PID: dead}, false},
		{"zero pid", Handle{StartTime: h.StartTime}, false},
		{"negative pid", Handle{PID: -1}, false},
		{"empty handle", Handle{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Alive(tt.h); got != tt.want {
				t.Errorf("Alive(%+v): got %v, want %v", tt.h, got, tt.want)
			}
		})
	}
	if !running(done) {
		t.Error("sleep exited during the checks, want it untouched")
	}
}

func TestAliveZombie(t *testing.T) {
	// Not reaped: after SIGKILL the process stays as a zombie.
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	defer func() { _ = cmd.Wait() }()
	st, err := ReadProcStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	h := Handle{PID: cmd.Process.Pid, StartTime: st.StartTime}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ReadProcStat(h.PID)
		if err != nil {
			t.Fatalf("read stat of the zombie: %v", err)
		}
		if st.State == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state: got %q, want Z within 10s", st.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if Alive(h) {
		t.Errorf("Alive(zombie): got true, want false")
	}
	if err := Signal(h, 0); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Signal(zombie, 0): got %v, want ErrNotRunning", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := WaitExit(ctx, h); err != nil {
		t.Errorf("WaitExit(zombie): got %v, want nil at once", err)
	}
}

func TestSignal(t *testing.T) {
	h, _, done := child(t)
	dead := deadPID(t)
	tests := []struct {
		name string
		h    Handle
		sig  syscall.Signal
		want error
	}{
		{"signal 0 to the same process", h, 0, nil},
		{"SIGKILL without start time", Handle{PID: h.PID}, syscall.SIGKILL, ErrNotRunning},
		// A reused pid is never signalled, not even with SIGKILL.
		{"SIGKILL to a reused pid", Handle{PID: h.PID, StartTime: h.StartTime + 1}, syscall.SIGKILL, ErrNotRunning},
		{"SIGTERM to a reused pid", Handle{PID: h.PID, StartTime: h.StartTime - 1}, syscall.SIGTERM, ErrNotRunning},
		{"signal 0 to a dead pid", Handle{PID: dead, StartTime: h.StartTime}, 0, ErrNotRunning},
		// kill(0, ...) and kill(-1, ...) would reach a process group or
		// every process: signal 0, so a regression harms nothing.
		{"zero pid", Handle{}, 0, ErrNotRunning},
		{"negative pid", Handle{PID: -1}, 0, ErrNotRunning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Signal(tt.h, tt.sig); !errors.Is(got, tt.want) || (tt.want == nil && got != nil) {
				t.Errorf("Signal(%+v, %d): got %v, want %v", tt.h, tt.sig, got, tt.want)
			}
			if tt.sig != 0 {
				time.Sleep(50 * time.Millisecond) // a delivered signal has ended it by now
			}
			if !running(done) {
				t.Fatalf("sleep exited after Signal(%+v, %d), want it untouched", tt.h, tt.sig)
			}
		})
	}
}

func TestSignalDelivers(t *testing.T) {
	h, cmd, done := child(t)
	if err := Signal(h, syscall.SIGTERM); err != nil {
		t.Fatalf("Signal(SIGTERM): got %v, want nil", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("sleep still runs 10s after SIGTERM")
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("exit status: got %v, want killed by SIGTERM", cmd.ProcessState)
	}
	if Alive(h) {
		t.Error("Alive after exit: got true, want false")
	}
	if err := Signal(h, 0); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Signal after exit: got %v, want ErrNotRunning", err)
	}
}

func TestKill(t *testing.T) {
	t.Run("same process", func(t *testing.T) {
		h, _, done := child(t)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := Kill(ctx, h); err != nil {
			t.Fatalf("Kill: got %v, want nil", err)
		}
		if Alive(h) {
			t.Error("Alive after Kill: got true, want false")
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("sleep not reaped 10s after Kill")
		}
	})
	t.Run("reused pid is left alone", func(t *testing.T) {
		h, _, done := child(t)
		other := Handle{PID: h.PID, StartTime: h.StartTime + 1}
		if err := Kill(t.Context(), other); err != nil {
			t.Fatalf("Kill(reused pid): got %v, want nil (nothing to kill)", err)
		}
		time.Sleep(50 * time.Millisecond)
		if !running(done) || !Alive(h) {
			t.Error("the process under a reused pid was killed, want it untouched")
		}
	})
	t.Run("dead pid", func(t *testing.T) {
		if err := Kill(t.Context(), Handle{PID: deadPID(t), StartTime: 1}); err != nil {
			t.Errorf("Kill(dead pid): got %v, want nil", err)
		}
	})
}

func TestWaitExit(t *testing.T) {
	h, _, _ := child(t)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	if err := WaitExit(ctx, h); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitExit(running): got %v, want context.DeadlineExceeded", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := WaitExit(ctx, Handle{PID: h.PID, StartTime: h.StartTime + 1}); err != nil {
		t.Errorf("WaitExit(reused pid): got %v, want nil at once", err)
	}
}
