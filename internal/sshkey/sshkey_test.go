package sshkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestEnsure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssh", "id_ed25519")
	key, err := Ensure(path)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	checks := []struct {
		name string
		path string
		mode os.FileMode
	}{
		{"private key", path, 0o600},
		{"public key", path + ".pub", 0o644},
		{"key directory", filepath.Dir(path), 0o700 | os.ModeDir},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			st, err := os.Stat(c.path)
			if err != nil {
				t.Fatalf("stat %s: %v", c.path, err)
			}
			// The umask can only take bits away; none may be added.
			if st.Mode()&^c.mode != 0 || st.Mode().Perm()&0o600 != 0o600 {
				t.Errorf("%s mode: got %v, want %v", c.path, st.Mode(), c.mode)
			}
		})
	}
	if st, _ := os.Stat(path); st != nil && st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode: got %v, want exactly 0600", st.Mode().Perm())
	}
	if key.PrivatePath != path {
		t.Errorf("PrivatePath: got %q, want %q", key.PrivatePath, path)
	}
	if got := key.Signer.PublicKey().Type(); got != ssh.KeyAlgoED25519 {
		t.Errorf("key type: got %q, want %q", got, ssh.KeyAlgoED25519)
	}
	if !strings.HasPrefix(key.AuthorizedLine, "ssh-ed25519 AAAA") || !strings.HasSuffix(key.AuthorizedLine, " banger") {
		t.Errorf("AuthorizedLine: got %q, want \"ssh-ed25519 AAAA... banger\"", key.AuthorizedLine)
	}
	if want := ssh.FingerprintSHA256(key.Signer.PublicKey()); key.Fingerprint != want || !strings.HasPrefix(want, "SHA256:") {
		t.Errorf("Fingerprint: got %q, want %q", key.Fingerprint, want)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if string(pub) != key.AuthorizedLine+"\n" {
		t.Errorf(".pub: got %q, want %q", pub, key.AuthorizedLine+"\n")
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file: got %v, want it gone", err)
	}

	again, err := Ensure(path)
	if err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if again.Fingerprint != key.Fingerprint || again.AuthorizedLine != key.AuthorizedLine {
		t.Errorf("second Ensure: got %s, want the same key %s", again.Fingerprint, key.Fingerprint)
	}
}

func TestEnsureErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr string
	}{
		{"garbage key", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "parse ssh key"},
		{"passphrase key", func(t *testing.T, path string) {
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, pemEncode(block), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "passphrase"},
		{"key path is a directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "read ssh key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "id_ed25519")
			tt.setup(t, path)
			_, err := Ensure(path)
			if err == nil {
				t.Fatalf("Ensure: got nil, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Ensure: got %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func newHostKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

var testAddr = &net.TCPAddr{IP: net.IPv4(172, 16, 0, 2), Port: 22}

func TestKnownHostsPinning(t *testing.T) {
	kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "ssh", "known_hosts")}
	keyA, keyB := newHostKey(t).PublicKey(), newHostKey(t).PublicKey()
	cb := kh.Callback("172.16.0.2", "web.vm")

	if err := cb("172.16.0.2:22", testAddr, keyA); err != nil {
		t.Fatalf("first contact: got %v, want nil (pin)", err)
	}
	st, err := os.Stat(kh.Path)
	if err != nil {
		t.Fatalf("known_hosts after pinning: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode: got %v, want 0600", st.Mode().Perm())
	}

	tests := []struct {
		name     string
		hostname string
		key      ssh.PublicKey
		mismatch bool
	}{
		{"same key by ip", "172.16.0.2:22", keyA, false},
		{"same key by name", "web.vm:22", keyA, false},
		{"other key by ip", "172.16.0.2:22", keyB, true},
		{"other key by name", "web.vm:22", keyB, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cb(tt.hostname, testAddr, tt.key)
			if got := errors.Is(err, ErrHostKeyMismatch); got != tt.mismatch {
				t.Errorf("callback(%s): got %v, want mismatch=%v", tt.hostname, err, tt.mismatch)
			}
			if !tt.mismatch && err != nil {
				t.Errorf("callback(%s): got %v, want nil", tt.hostname, err)
			}
		})
	}
	data, _ := os.ReadFile(kh.Path)
	if n := strings.Count(string(data), "\n"); n != 1 {
		t.Errorf("known_hosts: got %d lines %q, want 1 (no re-pinning of known hosts)", n, data)
	}

	// Another guest pins its own key beside the first.
	other := kh.Callback("172.16.0.3", "db.vm")
	if err := other("172.16.0.3:22", testAddr, keyB); err != nil {
		t.Errorf("first contact with a second guest: got %v, want nil", err)
	}
	if err := cb("172.16.0.2:22", testAddr, keyA); err != nil {
		t.Errorf("first guest after second pinned: got %v, want nil", err)
	}
}

func TestKnownHostsPinsDialedAddress(t *testing.T) {
	kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
	key, other := newHostKey(t).PublicKey(), newHostKey(t).PublicKey()
	// The caller names only the DNS name but dials a non-standard port.
	cb := kh.Callback("web.vm")
	if err := cb("127.0.0.1:2222", testAddr, key); err != nil {
		t.Fatalf("first contact: %v", err)
	}
	if err := cb("127.0.0.1:2222", testAddr, other); !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("second contact with another key: got %v, want ErrHostKeyMismatch", err)
	}
	data, _ := os.ReadFile(kh.Path)
	if !strings.HasPrefix(string(data), "web.vm,[127.0.0.1]:2222 ") {
		t.Errorf("known_hosts: got %q, want a line for web.vm,[127.0.0.1]:2222", data)
	}
}

func TestKnownHostsCorruptFile(t *testing.T) {
	kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
	if err := os.WriteFile(kh.Path, []byte("172.16.0.2 ssh-ed25519 !!!notbase64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := kh.Callback("172.16.0.2")("172.16.0.2:22", testAddr, newHostKey(t).PublicKey())
	if err == nil || !strings.Contains(err.Error(), "known_hosts") {
		t.Errorf("callback with a corrupt file: got %v, want an error naming known_hosts", err)
	}
}

func TestKnownHostsRemove(t *testing.T) {
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(newHostKey(t).PublicKey())))
	long := "# " + strings.Repeat("x", 100<<10) // longer than bufio.Scanner's default line
	lines := []string{
		"# banger known_hosts",
		"172.16.0.2,web.vm " + key,
		"172.16.0.3,db.vm " + key,
		"172.16.0.20 " + key,
		"[127.0.0.1]:2222 " + key,
		long,
		"",
		"cache.vm,172.16.0.4 " + key,
	}
	tests := []struct {
		name   string
		remove []string
		want   []string
	}{
		{"by ip", []string{"172.16.0.2"}, []string{lines[0], lines[2], lines[3], lines[4], lines[5], lines[6], lines[7]}},
		{"by name", []string{"db.vm"}, []string{lines[0], lines[1], lines[3], lines[4], lines[5], lines[6], lines[7]}},
		{"second field", []string{"172.16.0.4"}, lines[:7]},
		{"ip with port 22", []string{"172.16.0.3:22"}, []string{lines[0], lines[1], lines[3], lines[4], lines[5], lines[6], lines[7]}},
		{"other port", []string{"127.0.0.1:2222"}, []string{lines[0], lines[1], lines[2], lines[3], lines[5], lines[6], lines[7]}},
		{"several", []string{"172.16.0.2", "cache.vm"}, []string{lines[0], lines[2], lines[3], lines[4], lines[5], lines[6]}},
		{"unknown", []string{"172.16.0.9"}, lines},
		{"none", nil, lines},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
			if err := os.WriteFile(kh.Path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := kh.Remove(tt.remove...); err != nil {
				t.Fatalf("Remove(%q): %v", tt.remove, err)
			}
			data, err := os.ReadFile(kh.Path)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.Join(tt.want, "\n") + "\n"
			if string(data) != want {
				t.Errorf("Remove(%q): got %d bytes %.300q, want %d bytes %.300q", tt.remove, len(data), data, len(want), want)
			}
		})
	}
	t.Run("last line without newline", func(t *testing.T) {
		kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
		if err := os.WriteFile(kh.Path, []byte(lines[1]+"\n"+lines[2]), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := kh.Remove("web.vm"); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(kh.Path); string(data) != lines[2]+"\n" {
			t.Errorf("got %q, want %q", data, lines[2]+"\n")
		}
	})
	t.Run("missing file", func(t *testing.T) {
		kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
		if err := kh.Remove("172.16.0.2"); err != nil {
			t.Errorf("Remove on a missing file: got %v, want nil", err)
		}
		if _, err := os.Stat(kh.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Remove on a missing file: got %v, want no file created", err)
		}
	})
	t.Run("repin after remove", func(t *testing.T) {
		kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
		cb := kh.Callback("172.16.0.2", "web.vm")
		if err := cb("172.16.0.2:22", testAddr, newHostKey(t).PublicKey()); err != nil {
			t.Fatal(err)
		}
		if err := kh.Remove("172.16.0.2", "web.vm"); err != nil {
			t.Fatal(err)
		}
		if err := cb("172.16.0.2:22", testAddr, newHostKey(t).PublicKey()); err != nil {
			t.Errorf("new key after Remove: got %v, want nil (pinned afresh)", err)
		}
	})
}
