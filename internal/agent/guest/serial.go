package guest

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// retryDelay is the pause before reading or opening the port again when
// waiting on the kernel is not possible.
const retryDelay = 200 * time.Millisecond

// recheckEvery bounds a wait for the port to wake up, as a safety net: a
// read re-checks the port (and the context) at least this often.
const recheckEvery = time.Second

// serialPort is the guest end of the virtio-serial port. It is one stream
// for the VM's life: while no host client is connected, the kernel
// reports end of file on every read, and writes block. Read never
// reports that end of file: it waits for the port to wake up (the host
// connecting, or data) on the poller, and falls back to polling every
// retryDelay where that is not possible.
type serialPort struct {
	ctx  context.Context
	f    *os.File
	raw  syscall.RawConn // nil when the file cannot use the poller
	stop func() bool     // ends the ctx hook that wakes a parked read
}

func openSerial(ctx context.Context, path string) (*serialPort, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return newSerialPort(ctx, f), nil
}

func newSerialPort(ctx context.Context, f *os.File) *serialPort {
	p := &serialPort{ctx: ctx, f: f}
	// SetReadDeadline fails for files outside the poller.
	if f.SetReadDeadline(time.Time{}) == nil {
		if raw, err := f.SyscallConn(); err == nil {
			p.raw = raw
		}
	}
	p.stop = context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	return p
}

func (p *serialPort) Write(b []byte) (int, error) { return p.f.Write(b) }

func (p *serialPort) Close() error {
	p.stop()
	return p.f.Close()
}

func (p *serialPort) Read(b []byte) (int, error) {
	for {
		if err := p.ctx.Err(); err != nil {
			return 0, err
		}
		if p.raw == nil {
			n, err := p.f.Read(b)
			if n > 0 {
				return n, nil
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, err
			}
			sleep(p.ctx, retryDelay)
			continue
		}
		n, hup, err := p.readPolled(b)
		switch {
		case n > 0:
			return n, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case err != nil:
			return 0, err
		case hup:
			sleep(p.ctx, retryDelay)
		}
	}
}

// readPolled reads through the poller. An end of file (no host client)
// parks the read until the port's next wake-up; if wake-ups come back to
// back with nothing to read, it gives up with hup so the caller sleeps
// instead of spinning.
func (p *serialPort) readPolled(b []byte) (n int, hup bool, err error) {
	if err := p.f.SetReadDeadline(time.Now().Add(recheckEvery)); err != nil {
		return 0, false, err
	}
	if err := p.ctx.Err(); err != nil { // ended after Read's check
		return 0, false, err
	}
	var rerr error
	var last time.Time
	quick := 0
	err = p.raw.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), b)
		switch {
		case rerr == unix.EAGAIN || rerr == unix.EINTR:
			n, rerr = 0, nil
			return false
		case rerr != nil || n > 0:
			return true
		}
		n = 0
		now := time.Now()
		if now.Sub(last) < 20*time.Millisecond {
			quick++
		} else {
			quick = 0
		}
		last = now
		if quick >= 3 {
			hup = true
			return true
		}
		return false
	})
	if rerr != nil {
		return 0, false, rerr
	}
	return n, hup, err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
