// Package sshkey manages banger's SSH identity and its own known_hosts:
// the ed25519 key made on first use, pinning each guest's host key on
// first contact, dropping it when the VM is deleted, and waiting until a
// guest answers SSH. The daemon imports it; the CLI only passes the
// resulting paths to the system ssh.
package sshkey

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ErrHostKeyMismatch says a guest presented a host key other than the
// one pinned for it.
var ErrHostKeyMismatch = errors.New("host key does not match the pinned key")

// Key is banger's SSH identity.
type Key struct {
	PrivatePath    string
	AuthorizedLine string // "ssh-ed25519 AAAA... banger"
	Fingerprint    string // "SHA256:..."
	Signer         ssh.Signer
}

// Ensure loads the private key at path, creating an ed25519 key (and
// path.pub) when it does not exist yet.
func Ensure(path string) (Key, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := generate(path); err != nil {
			return Key{}, err
		}
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return Key{}, fmt.Errorf("read ssh key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return Key{}, fmt.Errorf("parse ssh key %s: %w (a passphrase-protected key cannot be used by banger)", path, err)
	}
	pub := signer.PublicKey()
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " banger"
	return Key{PrivatePath: path, AuthorizedLine: line, Fingerprint: ssh.FingerprintSHA256(pub), Signer: signer}, nil
}

func generate(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create ssh key dir: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate ssh key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "banger")
	if err != nil {
		return fmt.Errorf("encode ssh key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return fmt.Errorf("encode ssh public key: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("write ssh key: %w", err)
	}
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " banger\n"
	if err := os.WriteFile(path+".pub", []byte(authorized), 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write ssh public key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write ssh key: %w", err)
	}
	return nil
}

// KnownHosts is banger's own known_hosts file. Each guest is pinned under
// its IP and its "<name>.vm" DNS name.
type KnownHosts struct {
	Path string

	mu sync.Mutex // guards the file
}

// Callback returns a host key callback that pins the first key seen for
// hosts and afterwards accepts only that key.
func (k *KnownHosts) Callback(hosts ...string) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		k.mu.Lock()
		defer k.mu.Unlock()
		if _, err := os.Stat(k.Path); err == nil {
			check, err := knownhosts.New(k.Path)
			if err != nil {
				return fmt.Errorf("read known_hosts: %w", err)
			}
			err = check(hostname, remote, key)
			var keyErr *knownhosts.KeyError
			if err == nil {
				return nil
			}
			if !errors.As(err, &keyErr) || len(keyErr.Want) > 0 {
				return fmt.Errorf("%s: %w in %s (%v)", hostname, ErrHostKeyMismatch, k.Path, err)
			}
		}
		return k.appendLocked(append(slices.Clip(hosts), hostname), key)
	}
}

func (k *KnownHosts) appendLocked(hosts []string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(k.Path), 0o700); err != nil {
		return fmt.Errorf("pin host key: %w", err)
	}
	f, err := os.OpenFile(k.Path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("pin host key: %w", err)
	}
	defer f.Close()
	// The dialed address is pinned too, so the next check finds the key
	// even when the caller did not name it.
	var addrs []string
	for _, h := range hosts {
		if a := knownhosts.Normalize(h); !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if _, err := f.WriteString(knownhosts.Line(addrs, key) + "\n"); err != nil {
		return fmt.Errorf("pin host key: %w", err)
	}
	return nil
}

// Remove drops every line naming any of hosts. A missing file is fine.
func (k *KnownHosts) Remove(hosts ...string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	data, err := os.ReadFile(k.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read known_hosts: %w", err)
	}
	drop := map[string]bool{}
	for _, h := range hosts {
		drop[knownhosts.Normalize(h)] = true
	}
	var out bytes.Buffer
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		keep := true
		if len(fields) > 0 {
			for _, h := range strings.Split(fields[0], ",") {
				if drop[h] {
					keep = false
				}
			}
		}
		if keep {
			out.WriteString(strings.TrimSuffix(line, "\n") + "\n")
		}
	}
	tmp := k.Path + ".tmp"
	if err := os.WriteFile(tmp, out.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	if err := os.Rename(tmp, k.Path); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	return nil
}

// WaitReady dials addr (host:22) until an SSH session as root with
// signer succeeds and runs `true`, or ctx ends. The host key is checked
// (and pinned on first contact) by hostKey.
func WaitReady(ctx context.Context, addr string, signer ssh.Signer, hostKey ssh.HostKeyCallback) error {
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKey,
		// Pin ed25519 keys: the system ssh prefers them too.
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256},
		Timeout:           3 * time.Second,
	}
	var lastErr error
	for {
		lastErr = tryOnce(ctx, addr, cfg)
		if lastErr == nil {
			return nil
		}
		if errors.Is(lastErr, ErrHostKeyMismatch) {
			return lastErr
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ssh %s not ready: %w (last error: %v)", addr, ctx.Err(), lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tryOnce(ctx context.Context, addr string, cfg *ssh.ClientConfig) error {
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The handshake and the session do not watch ctx: closing the
	// connection when ctx ends stops a guest that accepts and stalls.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		return err
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	return sess.Run("true")
}
