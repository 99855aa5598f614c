// Command banger is the CLI of banger: disposable Linux sandboxes on microVMs.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"banger/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
