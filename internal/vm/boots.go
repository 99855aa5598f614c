package vm

import (
	"context"
	"sync"
)

// boots lets a stop end a start that is still booting: a start holds the
// VM's lock while it waits for SSH, up to minutes at a first boot, and a
// stop would otherwise wait all that time behind it. Cancelling the
// start's context rolls the boot back (the VMM is killed); the stop then
// settles the VM as stopped.
type boots struct {
	mu sync.Mutex
	m  map[string]context.CancelCauseFunc
}

// begin registers a start of the VM id and returns the context its steps
// run under; end unregisters it.
func (b *boots) begin(ctx context.Context, id string) (_ context.Context, end func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	b.mu.Lock()
	if b.m == nil {
		b.m = map[string]context.CancelCauseFunc{}
	}
	b.m[id] = cancel
	b.mu.Unlock()
	return ctx, func() {
		b.mu.Lock()
		delete(b.m, id)
		b.mu.Unlock()
		cancel(nil)
	}
}

// cancel ends the start of the VM id in progress, if any, with cause,
// and reports whether there was one.
func (b *boots) cancel(id string, cause error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.m[id]
	if ok {
		c(cause)
	}
	return ok
}
