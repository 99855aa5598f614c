package vm

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"banger/internal/errdefs"
	"banger/internal/image"
	"banger/internal/model"
)

func TestFirstBootOf(t *testing.T) {
	withFB := t.TempDir()
	if err := image.WriteFirstBoot(withFB, image.FirstBoot{PackageManager: "apt-get", Installs: []string{"systemd", "sshd"}}); err != nil {
		t.Fatal(err)
	}
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, image.FirstBootFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := t.TempDir()
	if err := markFirstBootDone(model.VMRecord{Runtime: model.VMRuntime{VMDir: done}}); err != nil {
		t.Fatal(err)
	}
	// The console of a first boot that finished while no start waited
	// for it (a daemon restart), and of one that failed.
	console := func(text string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "console.log"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	installed := console("[    1.0] Run /usr/local/sbin/banger-firstboot as init process\r\nbanger-firstboot: first boot: installing systemd and sshd with apt-get\r\n" + image.FirstBootInstalledLine + "\r\n[  OK  ] Reached target multi-user.target\r\n")
	failed := console("banger-firstboot: first boot: installing systemd and sshd with apt-get\nbanger-firstboot: error: apt-get install failed\n")
	quoted := console("echo '" + image.FirstBootInstalledLine + "'\n")
	tests := []struct {
		name        string
		imageDir    string
		vmDir       string
		nat         bool
		wantImage   bool
		wantPending bool
		wantNATErr  bool
		wantErr     bool
	}{
		{"plain image", t.TempDir(), t.TempDir(), false, false, false, false, false},
		{"registered image without dir", "", t.TempDir(), false, false, false, false, false},
		{"first boot pending, no nat", withFB, t.TempDir(), false, true, true, true, false},
		{"first boot pending, nat", withFB, t.TempDir(), true, true, true, false, false},
		{"new vm, no dir yet", withFB, "", false, true, true, true, false},
		{"first boot done, no nat", withFB, done, false, true, false, false, false},
		{"install finished on the console, no marker", withFB, installed, false, true, false, false, false},
		{"install failed on the console", withFB, failed, false, true, true, true, false},
		{"installed line not on a line of its own", withFB, quoted, false, true, true, true, false},
		{"broken firstboot.json", broken, t.TempDir(), false, false, false, false, true},
	}
	defer func() {
		// What the console proved is recorded, as a finished start does.
		if _, err := os.Stat(filepath.Join(installed, firstBootMarker)); err != nil {
			t.Errorf("first boot finished on the console: marker %v, want it written", err)
		}
		if _, err := os.Stat(filepath.Join(failed, firstBootMarker)); err == nil {
			t.Errorf("failed first boot: marker written, want none")
		}
	}()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := model.Image{Name: "img", ArtifactDir: tt.imageDir}
			rec := model.VMRecord{Name: "vm1", Spec: model.VMSpec{NATEnabled: tt.nat}, Runtime: model.VMRuntime{VMDir: tt.vmDir}}
			st, err := firstBootOf(img, rec)
			if (err != nil) != tt.wantErr {
				t.Fatalf("firstBootOf error = %v, want error %v", err, tt.wantErr)
			}
			if st.Image != tt.wantImage || st.Pending != tt.wantPending {
				t.Errorf("got image %v pending %v, want %v %v", st.Image, st.Pending, tt.wantImage, tt.wantPending)
			}
			err = st.checkNAT(img, rec)
			if (err != nil) != tt.wantNATErr {
				t.Fatalf("checkNAT = %v, want error %v", err, tt.wantNATErr)
			}
			if err != nil {
				if !errdefs.IsInvalid(err) {
					t.Errorf("checkNAT error %v is not invalid input", err)
				}
				for _, want := range []string{`image "img" has no systemd and sshd`, "installs systemd and sshd with apt-get at its first boot", "needs NAT", "--nat", "banger vm set vm1 --nat"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("checkNAT error %q lacks %q", err, want)
					}
				}
			}
		})
	}
}

func TestWatchConsole(t *testing.T) {
	defer func(d time.Duration) { consolePoll = d }(consolePoll)
	consolePoll = 5 * time.Millisecond
	path := filepath.Join(t.TempDir(), "console.log")
	// A previous boot's output, which the watch must skip.
	old := "banger-firstboot: error: an old failure\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchConsole(ctx, path, int64(len(old)), func(l string) {
			mu.Lock()
			got = append(got, l)
			mu.Unlock()
		})
	}()
	lines := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	waitLines := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(lines()) < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, chunk := range []string{"[    1.0] kernel\r\n", "banger-firstboot: running: apt-", "get update\n", "half a line"} {
		if _, err := f.WriteString(chunk); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitLines(2)
	if _, err := f.WriteString(" ends\n"); err != nil {
		t.Fatal(err)
	}
	waitLines(3)
	cancel()
	<-done
	want := []string{"[    1.0] kernel", "banger-firstboot: running: apt-get update", "half a line ends"}
	if g := lines(); !slices.Equal(g, want) {
		t.Errorf("lines = %q, want %q", g, want)
	}
}
