// Command bangerd is banger's daemon: it owns images, VMs, disks and
// network, and serves the banger CLI over a unix socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"banger/internal/api"
	"banger/internal/config"
	"banger/internal/daemon"
	"banger/internal/paths"
)

func main() {
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println(daemon.Version)
		return
	}
	layout, err := paths.Resolve()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bangerd:", err)
		os.Exit(1)
	}
	level := slog.LevelInfo
	if cfg, err := config.Load(layout); err == nil {
		_ = level.UnmarshalText([]byte(cfg.LogLevel))
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := daemon.New(ctx, layout, logger)
	if err != nil {
		logger.Error("bangerd failed to start", "error", err.Error())
		fmt.Fprintln(os.Stderr, "bangerd:", err)
		if errors.Is(err, daemon.ErrAlreadyRunning) {
			os.Exit(api.ExitDaemonAlreadyRunning)
		}
		os.Exit(1)
	}
	if err := d.Run(ctx); err != nil {
		logger.Error("bangerd failed", "error", err.Error())
		os.Exit(1)
	}
}
