// Command banger-agent runs in banger guests and answers the host's
// health, ping and ports requests over a virtio-serial port and, where
// the VMM offers it, vsock. It is built static (CGO_ENABLED=0) and
// installed into images with its systemd unit; it logs to stderr.
//
// `banger-agent net` instead configures the guest's network from the
// banger.* kernel command line parameters once, and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"banger/internal/agent"
	"banger/internal/agent/guest"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "net" {
		os.Exit(runNet(os.Args[2:], os.Stdout, os.Stderr))
	}
	flag.Usage = usage
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

func usage() {
	out := flag.CommandLine.Output()
	fmt.Fprint(out, `usage: banger-agent [flags]
       banger-agent net

With no subcommand, serve the agent protocol for the VM's life.

subcommands:
  net	configure the network from the banger.* kernel command line
	parameters (address, gateway, DNS, hostname) and exit

flags:
`)
	flag.PrintDefaults()
}

// cmdlinePath is where `banger-agent net` reads the kernel command line.
const cmdlinePath = "/proc/cmdline"

// runNet is `banger-agent net`: it returns the exit code.
func runNet(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("banger-agent net", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: banger-agent net\n\nConfigure this VM's network from the banger.* parameters in %s:\n"+
			"banger.ip, banger.gw, banger.dns, banger.hostname, banger.mac.\n", cmdlinePath)
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "banger-agent net: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	line, err := netSetup(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "banger-agent net: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, line)
	return 0
}

func netSetup(ctx context.Context) (string, error) {
	cmdline, err := os.ReadFile(cmdlinePath)
	if err != nil {
		return "", fmt.Errorf("read kernel command line: %w", err)
	}
	cfg, err := guest.ParseCmdline(string(cmdline))
	if err != nil {
		return "", err
	}
	nic, err := guest.ApplyNet(ctx, cfg, "/")
	if err != nil {
		return "", err
	}
	return netSummary(nic, cfg), nil
}

// netSummary is the line `banger-agent net` prints on success.
func netSummary(nic string, cfg guest.NetConfig) string {
	if nic == "" {
		return "banger-agent net: no banger.ip on the kernel command line, interfaces left alone"
	}
	gw, dns := "none", "none"
	if cfg.Gateway.IsValid() {
		gw = cfg.Gateway.String()
	}
	if len(cfg.DNS) > 0 {
		servers := make([]string, len(cfg.DNS))
		for i, a := range cfg.DNS {
			servers[i] = a.String()
		}
		dns = strings.Join(servers, ",")
	}
	return fmt.Sprintf("banger-agent net: %s %s gw %s dns %s", nic, cfg.Addr, gw, dns)
}
