// Command banger-agent runs in banger guests and answers the host's
// health, ping and ports requests over a virtio-serial port and, where
// the VMM offers it, vsock. It is built static (CGO_ENABLED=0) and
// installed into images with its systemd unit; it logs to stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"banger/internal/agent"
	"banger/internal/agent/guest"
)

func main() {
	serial := flag.String("serial", guest.DefaultSerialPath, "virtio-serial port to serve (empty: none)")
	vsockPort := flag.Uint("vsock-port", guest.DefaultVsockPort, "vsock port to listen on when /dev/vsock exists (0: none)")
	version := flag.Bool("version", false, "print the version and exit")
	debug := flag.Bool("debug", false, "log debug messages")
	flag.Parse()
	if *version {
		fmt.Printf("banger-agent %s (protocol %d)\n", agent.Version, agent.ProtocolVersion)
		return
	}
	if *vsockPort > 1<<32-1 {
		fmt.Fprintf(os.Stderr, "banger-agent: -vsock-port %d is out of range\n", *vsockPort)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	// The journal stamps each line; no time here.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("banger-agent starting", "version", agent.Version, "protocol", agent.ProtocolVersion)
	if err := guest.Run(ctx, guest.Options{
		SerialPath: *serial,
		VsockPort:  uint32(*vsockPort),
		Logger:     log,
		Server:     &agent.Server{Logger: log},
	}); err != nil {
		log.Error("banger-agent", "err", err)
		os.Exit(1)
	}
}
