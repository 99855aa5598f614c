// Package guest is banger-agent's side of the guest: it keeps the agent
// protocol served on the virtio-serial port and on a vsock port for the
// VM's whole life. Only cmd/banger-agent imports it.
package guest

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"banger/internal/agent"
)

// Default places the agent listens.
const (
	DefaultSerialPath = "/dev/virtio-ports/banger.agent"
	DefaultVsockPort  = 1024
	vsockDevice       = "/dev/vsock"
)

// missingPortRecheck is how often the agent looks for a serial port or a
// vsock transport that is not there (a VMM without that device, or udev
// not done yet); tests shorten it.
var missingPortRecheck = 5 * time.Second

// shutdownWait bounds how long Run waits for its servers once ctx ends.
const shutdownWait = 2 * time.Second

// Options configures Run.
type Options struct {
	SerialPath string // "" disables the serial port
	VsockPort  uint32 // 0 disables vsock; also off when /dev/vsock is absent
	Logger     *slog.Logger
	Server     *agent.Server // nil for the default
}

// Run serves the agent protocol until ctx ends. A host client going
// away never stops it: the serial port is served again and the vsock
// listener keeps accepting.
func Run(ctx context.Context, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := opts.Server
	if srv == nil {
		srv = &agent.Server{Logger: log}
	}
	var wg sync.WaitGroup
	if opts.SerialPath != "" {
		wg.Go(func() { serveSerial(ctx, log, srv, opts.SerialPath) })
	}
	if opts.VsockPort != 0 {
		wg.Go(func() { watchVsock(ctx, log, srv, vsockDevice, opts.VsockPort) })
	}
	<-ctx.Done()
	// A write to the serial port blocks while no host client is
	// connected; do not hold up a shutdown for it.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownWait):
		log.Warn("stopping with a request still in progress")
	}
	return nil
}

// vsockListen listens on a vsock port; tests replace it.
var vsockListen = listenVsock

// watchVsock serves the vsock port once device exists and a listener
// opens: the vsock transport is a module that udev loads when the VMM's
// device shows up, possibly after the agent started. Until then the
// serial port alone serves.
func watchVsock(ctx context.Context, log *slog.Logger, srv *agent.Server, device string, port uint32) {
	logged := false
	for ctx.Err() == nil {
		_, err := os.Stat(device)
		var l *os.File
		if err == nil {
			l, err = vsockListen(port)
		}
		if err != nil {
			if !logged {
				log.Info("vsock not available yet; serving the serial port, looking again every few seconds", "device", device, "err", err)
				logged = true
			}
			sleep(ctx, missingPortRecheck)
			continue
		}
		log.Info("listening on vsock", "port", port)
		serveVsock(ctx, log, srv, l)
		return
	}
}

// serveSerial opens the serial port and serves it, again and again.
func serveSerial(ctx context.Context, log *slog.Logger, srv *agent.Server, path string) {
	missingLogged := false
	for ctx.Err() == nil {
		port, err := openSerial(ctx, path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if !missingLogged {
					log.Info("serial port not present yet; looking again every few seconds", "path", path)
					missingLogged = true
				}
				sleep(ctx, missingPortRecheck)
				continue
			}
			log.Warn("open serial port", "path", path, "err", err)
			sleep(ctx, retryDelay)
			continue
		}
		missingLogged = false
		log.Info("serving serial port", "path", path)
		err = srv.Serve(ctx, port)
		port.Close()
		if ctx.Err() != nil {
			return
		}
		log.Warn("serial port stopped; reopening", "path", path, "err", err)
		sleep(ctx, retryDelay)
	}
}

// serveVsock accepts vsock connections and serves each until it closes.
func serveVsock(ctx context.Context, log *slog.Logger, srv *agent.Server, l *os.File) {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := acceptVsock(l)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("vsock accept", "err", err)
			sleep(ctx, retryDelay)
			continue
		}
		wg.Go(func() {
			defer conn.Close()
			if err := srv.Serve(ctx, conn); err != nil && ctx.Err() == nil {
				log.Debug("vsock connection ended", "err", err)
			}
		})
	}
}
