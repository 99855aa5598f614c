package vm

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"banger/internal/model"
	"banger/internal/vmm"
)

// A stop of a VM whose start still waits for its guest ends that start
// at once (instead of waiting out the SSH wait behind the VM's lock) and
// leaves the VM stopped, its VMM gone.
func TestStopEndsBoot(t *testing.T) {
	drv := &testDriver{t: t, name: "qemu"}
	f := newLifecycleFixture(t, drv)
	rec := f.create(t, "slow", true)
	waiting := make(chan handles, 1)
	f.s.guestReady = func(ctx context.Context, _ model.VMRecord, h handles) error {
		waiting <- h
		<-ctx.Done() // a guest that never answers
		return ctx.Err()
	}
	startErr := make(chan error, 1)
	go func() {
		_, err := f.s.Start(context.Background(), rec.ID, nil)
		startErr <- err
	}()
	var h handles
	select {
	case h = <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the start never reached its guest wait")
	}

	began := time.Now()
	got, err := f.s.Stop(t.Context(), rec.ID)
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("stop took %s, want it to end the boot rather than wait", took)
	}
	if got.State != model.VMStateStopped || got.Runtime.LastError != "" {
		t.Errorf("after stop: state %s, last error %q; want stopped and none", got.State, got.Runtime.LastError)
	}
	select {
	case err := <-startErr:
		if err == nil || !strings.Contains(err.Error(), errStopRequested.Error()) {
			t.Errorf("start: got %v, want an error saying %q", err, errStopRequested)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the start did not return after the stop")
	}
	if vmm.Alive(h.VMM) {
		t.Errorf("vmm pid %d still runs after the stop", h.VMM.PID)
	}
	if f.s.boots.cancel(rec.ID, errors.New("late")) {
		t.Error("the ended start is still registered")
	}
}
