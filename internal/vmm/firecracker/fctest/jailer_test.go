package fctest

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseJailerArgs: the fake jailer reads the command line of
// docs/jailer.md and refuses what the jailer refuses.
func TestParseJailerArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    string
		want    jailerOptions
		wantErr string
	}{
		{name: "driver's command line",
			args: "--id vm-1 --exec-file /usr/bin/firecracker --uid 1000 --gid 1001 --chroot-base-dir /srv/banger -- --api-sock /firecracker.sock",
			want: jailerOptions{id: "vm-1", execFile: "/usr/bin/firecracker", chrootBase: "/srv/banger", uid: 1000, gid: 1001,
				extra: []string{"--api-sock", "/firecracker.sock"}}},
		{name: "defaults and flags",
			args: "--id a --exec-file /fc/firecracker --uid 0 --gid 0 --netns /var/run/netns/n --daemonize --new-pid-ns --cgroup cpu.shares=2 --cgroup-version 2 --resource-limit no-file=1024",
			want: jailerOptions{id: "a", execFile: "/fc/firecracker", chrootBase: "/srv/jailer", netns: "/var/run/netns/n",
				daemonize: true, newPIDNS: true}},
		{name: "version", args: "--version", want: jailerOptions{chrootBase: "/srv/jailer", version: true}},
		{name: "missing id", args: "--exec-file /fc/firecracker --uid 1 --gid 1", wantErr: "missing argument: --id"},
		{name: "unknown argument", args: "--id a --exec-file /fc/firecracker --uid 1 --gid 1 --seccomp-level 2", wantErr: `"--seccomp-level" which wasn't expected`},
		{name: "firecracker argument before --", args: "--id a --exec-file /fc/firecracker --uid 1 --gid 1 --api-sock /s", wantErr: `"--api-sock"`},
		{name: "negative uid", args: "--id a --exec-file /fc/firecracker --uid -1 --gid 1", wantErr: "invalid uid"},
		{name: "value missing", args: "--id a --exec-file /fc/firecracker --uid 1 --gid", wantErr: `"--gid" needs a value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseJailerArgs(strings.Fields(tt.args))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, %v, want %+v", got, err, tt.want)
			}
		})
	}
}

func TestAtLeast17(t *testing.T) {
	for v, want := range map[string]bool{"1.5.0": false, "1.6.1": false, "1.7.0": true, "1.10.0": true, "2.0.0": true} {
		if got := atLeast17(v); got != want {
			t.Errorf("%s: got %v, want %v", v, got, want)
		}
	}
}
