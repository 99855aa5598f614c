package vm

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// entries returns how many ids l holds an entry for.
func (l *locks) entries() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// refs returns the reference count of id's entry, 0 when it has none.
func (l *locks) refs(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[id]; e != nil {
		return e.refs
	}
	return 0
}

func TestLocksSameIDSerialises(t *testing.T) {
	tests := []struct {
		name       string
		ids        []string // each goroutine i locks ids[i%len(ids)]
		goroutines int
		rounds     int
	}{
		{name: "one id", ids: []string{"vm-a"}, goroutines: 16, rounds: 200},
		{name: "two ids interleaved", ids: []string{"vm-a", "vm-b"}, goroutines: 16, rounds: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l locks
			// counters are plain ints: -race reports any unserialised access,
			// and the Gosched between read and write loses updates without it.
			counters := make(map[string]*int, len(tt.ids))
			inside := make(map[string]*atomic.Int32, len(tt.ids))
			for _, id := range tt.ids {
				counters[id] = new(int)
				inside[id] = new(atomic.Int32)
			}
			var maxInside atomic.Int32
			var wg sync.WaitGroup
			for g := range tt.goroutines {
				id := tt.ids[g%len(tt.ids)]
				wg.Go(func() {
					for range tt.rounds {
						unlock := l.lock(id)
						n := inside[id].Add(1)
						for m := maxInside.Load(); n > m && !maxInside.CompareAndSwap(m, n); m = maxInside.Load() {
						}
						v := *counters[id]
						runtime.Gosched()
						*counters[id] = v + 1
						inside[id].Add(-1)
						unlock()
					}
				})
			}
			wg.Wait()
			perID := tt.goroutines / len(tt.ids) * tt.rounds
			for _, id := range tt.ids {
				if got := *counters[id]; got != perID {
					t.Errorf("counter of %s: got %d, want %d (lost updates mean the lock did not serialise)", id, got, perID)
				}
			}
			if got := maxInside.Load(); got != 1 {
				t.Errorf("most holders of one id at once: got %d, want 1", got)
			}
			if got := l.entries(); got != 0 {
				t.Errorf("lock entries after every unlock: got %d, want 0", got)
			}
		})
	}
}

func TestLocksDifferentIDsRunInParallel(t *testing.T) {
	tests := []struct {
		name string
		ids  []string
	}{
		{name: "two ids", ids: []string{"vm-a", "vm-b"}},
		{name: "four ids", ids: []string{"1", "2", "3", "4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l locks
			// Every goroutine takes its own id's lock and then waits until
			// all the others hold theirs too: that only finishes when the
			// locks are held at the same time.
			var held sync.WaitGroup
			held.Add(len(tt.ids))
			allHeld := make(chan struct{})
			go func() { held.Wait(); close(allHeld) }()
			release := make(chan struct{})
			var done sync.WaitGroup
			for _, id := range tt.ids {
				done.Go(func() {
					unlock := l.lock(id)
					defer unlock()
					held.Done()
					<-release
				})
			}
			select {
			case <-allHeld:
			case <-time.After(5 * time.Second):
				t.Fatalf("locks of %q held at once: got timeout, want all held together", tt.ids)
			}
			if got, want := l.entries(), len(tt.ids); got != want {
				t.Errorf("lock entries while held: got %d, want %d", got, want)
			}
			close(release)
			done.Wait()
			if got := l.entries(); got != 0 {
				t.Errorf("lock entries after unlock: got %d, want 0", got)
			}
		})
	}
}

func TestLocksBlocksSecondHolder(t *testing.T) {
	var l locks
	unlock := l.lock("vm-a")
	acquired := make(chan func())
	go func() { acquired <- l.lock("vm-a") }()

	// Wait until the second caller is registered as a waiter.
	deadline := time.Now().Add(5 * time.Second)
	for l.refs("vm-a") != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("refs of vm-a with a waiter: got %d, want 2", l.refs("vm-a"))
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case u := <-acquired:
		u()
		t.Fatal("second lock of vm-a: got it while the first was held, want it to block")
	case <-time.After(50 * time.Millisecond):
	}

	unlock()
	var unlock2 func()
	select {
	case unlock2 = <-acquired:
	case <-time.After(5 * time.Second):
		t.Fatal("second lock of vm-a: got timeout after the first unlock, want it acquired")
	}
	// The waiter's entry survived the first unlock.
	if got := l.refs("vm-a"); got != 1 {
		t.Errorf("refs of vm-a held once: got %d, want 1", got)
	}
	unlock2()
	if got := l.entries(); got != 0 {
		t.Errorf("lock entries after unlock: got %d, want 0", got)
	}
}

func TestLocksNoLeak(t *testing.T) {
	tests := []struct {
		name string
		n    int
	}{
		{name: "sequential ids", n: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l locks
			for i := range tt.n {
				unlock := l.lock(fmt.Sprintf("vm-%d", i))
				if got := l.entries(); got != 1 {
					t.Fatalf("lock entries while vm-%d is held: got %d, want 1", i, got)
				}
				unlock()
			}
			if got := l.entries(); got != 0 {
				t.Errorf("lock entries after %d lock/unlock pairs: got %d, want 0", tt.n, got)
			}
		})
	}
}
