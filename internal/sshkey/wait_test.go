package sshkey

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }

// sshServer is a minimal in-process SSH server on 127.0.0.1: it accepts
// one client key and answers exec requests with exit status 0 for
// "true" and 1 for anything else.
type sshServer struct {
	addr    string
	hostKey ssh.Signer

	mu    sync.Mutex
	execs []string // "user: command"
}

func startSSHServer(t *testing.T, allowed ssh.PublicKey) *sshServer {
	t.Helper()
	srv := &sshServer{hostKey: newHostKey(t)}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), allowed.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(srv.hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv.addr = ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { srv.serve(conn, cfg) })
		}
	})
	return srv
}

func (s *sshServer) serve(conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range chReqs {
				if req.Type != "exec" {
					_ = req.Reply(false, nil)
					continue
				}
				var payload struct{ Command string }
				if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
					_ = req.Reply(false, nil)
					continue
				}
				_ = req.Reply(true, nil)
				s.mu.Lock()
				s.execs = append(s.execs, sc.User()+": "+payload.Command)
				s.mu.Unlock()
				status := uint32(1)
				if payload.Command == "true" {
					status = 0
				}
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
				return
			}
		}()
	}
}

func (s *sshServer) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.execs...)
}

func TestWaitReady(t *testing.T) {
	key, err := Ensure(filepath.Join(t.TempDir(), "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startSSHServer(t, key.Signer.PublicKey())
	kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := WaitReady(ctx, srv.addr, key.Signer, kh.Callback("web.vm")); err != nil {
		t.Fatalf("WaitReady: got %v, want nil", err)
	}
	if got, want := strings.Join(srv.commands(), "|"), "root: true"; got != want {
		t.Errorf("commands run: got %q, want %q", got, want)
	}

	// The host key is now pinned: a second wait passes, and a server
	// with another key on the same address is refused at once.
	if err := WaitReady(ctx, srv.addr, key.Signer, kh.Callback("web.vm")); err != nil {
		t.Errorf("second WaitReady: got %v, want nil", err)
	}
	impostor := newHostKey(t)
	check := kh.Callback("web.vm")
	host, _, _ := net.SplitHostPort(srv.addr)
	if err := check(srv.addr, &net.TCPAddr{IP: net.ParseIP(host)}, impostor.PublicKey()); !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("callback with another host key: got %v, want ErrHostKeyMismatch", err)
	}
}

func TestWaitReadyHostKeyMismatchStopsAtOnce(t *testing.T) {
	key, err := Ensure(filepath.Join(t.TempDir(), "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startSSHServer(t, key.Signer.PublicKey())
	kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
	// Pin another key for the server's address first.
	host, _, _ := net.SplitHostPort(srv.addr)
	if err := kh.Callback(srv.addr)(srv.addr, &net.TCPAddr{IP: net.ParseIP(host)}, newHostKey(t).PublicKey()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err = WaitReady(ctx, srv.addr, key.Signer, kh.Callback(srv.addr))
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("WaitReady against a changed host key: got %v, want ErrHostKeyMismatch", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WaitReady against a changed host key: took %v, want it to stop without retrying", d)
	}
	if got := srv.commands(); len(got) != 0 {
		t.Errorf("commands run on an unverified host: got %q, want none", got)
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	key, err := Ensure(filepath.Join(t.TempDir(), "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	// A port that accepts and never speaks.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	wrongKey, err := Ensure(filepath.Join(t.TempDir(), "other_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	refusing := startSSHServer(t, wrongKey.Signer.PublicKey())

	tests := []struct {
		name     string
		addr     string
		wantLast string
	}{
		{"nothing listens", closed, "connection refused"},
		{"silent server", silent.Addr().String(), ""},
		{"key not accepted", refusing.addr, "unable to authenticate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
			ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := WaitReady(ctx, tt.addr, key.Signer, kh.Callback(tt.addr))
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("WaitReady: got nil, want a timeout error")
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("WaitReady: got %v, want errors.Is DeadlineExceeded", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "ssh "+tt.addr+" not ready") || !strings.Contains(msg, tt.wantLast) {
				t.Errorf("WaitReady: got %q, want it to say ssh %s not ready and contain %q", msg, tt.addr, tt.wantLast)
			}
			if elapsed > 5*time.Second {
				t.Errorf("WaitReady with a 1.5s context: took %v, want it to return soon after the deadline", elapsed)
			}
		})
	}
}
