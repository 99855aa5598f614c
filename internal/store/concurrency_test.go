package store

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"banger/internal/errdefs"
)

// checkDistinct fails the test unless the store holds want VMs with
// distinct names and guest IPs.
func checkDistinct(t *testing.T, ctx context.Context, s *Store, want int) {
	t.Helper()
	vms, err := s.ListVMs(ctx)
	if err != nil {
		t.Fatalf("ListVMs: %v", err)
	}
	if len(vms) != want {
		t.Errorf("got %d vms, want %d", len(vms), want)
	}
	names, ips := map[string]bool{}, map[string]bool{}
	for _, v := range vms {
		if names[v.Name] {
			t.Errorf("name %q stored twice", v.Name)
		}
		if ips[v.Runtime.GuestIP] {
			t.Errorf("guest ip %q given twice", v.Runtime.GuestIP)
		}
		names[v.Name], ips[v.Runtime.GuestIP] = true, true
	}
}

// TestConcurrentCreateSeparateStores has twenty stores, each with its own
// connection pool as a separate process would have, open one fresh file
// and create VMs on it at once: every open and create succeeds and every
// VM gets its own address.
func TestConcurrentCreateSeparateStores(t *testing.T) {
	const n, perStore = 20, 5
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "banger.db")
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			if err := createVMs(ctx, path, fmt.Sprintf("store-%d", i), perStore); err != nil {
				errs <- fmt.Errorf("store %d: %w", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	checkDistinct(t, ctx, s, n*perStore)
}

// createVMs opens its own store on path, makes sure image img1 exists and
// creates count VMs named after prefix with lowestFreeIP.
func createVMs(ctx context.Context, path, prefix string, count int) error {
	s, err := Open(ctx, path)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.CreateImage(ctx, newImage("img1", "bookworm")); err != nil && !errdefs.IsAlreadyExists(err) {
		return err
	}
	for j := range count {
		name := fmt.Sprintf("%s-vm-%d", prefix, j)
		if _, err := s.CreateVM(ctx, newVM(name, name, "img1"), lowestFreeIP); err != nil {
			return err
		}
	}
	return nil
}

// Environment of the helper process of TestConcurrentCreateProcesses.
const (
	envHelperDB    = "BANGER_STORE_HELPER_DB"
	envHelperIndex = "BANGER_STORE_HELPER_INDEX"
	helperVMs      = 3
)

// TestConcurrentCreateProcesses runs separate OS processes against one
// fresh file; each migrates it on open and creates VMs.
func TestConcurrentCreateProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; run without -short")
	}
	const n = 8
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "banger.db")
	// Every process opens the fresh file at once, races to migrate it and
	// to create the image they share.
	var wg sync.WaitGroup
	out := make([][]byte, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
			cmd.Env = append(os.Environ(), envHelperDB+"="+path, envHelperIndex+"="+strconv.Itoa(i))
			out[i], errs[i] = cmd.CombinedOutput()
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("process %d: %v\n%s", i, errs[i], out[i])
		}
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	checkDistinct(t, ctx, s, n*helperVMs)
}

// TestHelperProcess is the body of a process started by
// TestConcurrentCreateProcesses; run directly it does nothing.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(envHelperDB)
	if path == "" {
		t.Skip("helper process of TestConcurrentCreateProcesses; not a test of its own")
	}
	i, err := strconv.Atoi(os.Getenv(envHelperIndex))
	if err != nil {
		t.Fatalf("bad %s: %v", envHelperIndex, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := createVMs(ctx, path, "proc-"+strconv.Itoa(i), helperVMs); err != nil {
		t.Fatal(err)
	}
}
