package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"banger/internal/api"
)

func newVMLogsCmd(g *globals) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs VM",
		Short: "Print a VM's serial console log",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var logs api.VMLogs
			if err := g.call(cmd.Context(), api.MethodVMLogs, api.Ref{Ref: args[0]}, &logs); err != nil {
				return err
			}
			return tail(cmd.Context(), g.stdout, logs.Path, follow)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until interrupted")
	return cmd
}

// tail copies the file at path to w, then with follow keeps copying what
// is appended until ctx ends.
func tail(ctx context.Context, w io.Writer, path string, follow bool) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) && !follow {
		return nil // never booted: nothing logged yet
	}
	for os.IsNotExist(err) && follow {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
		f, err = os.Open(path)
	}
	if err != nil {
		return fmt.Errorf("open console log: %w", err)
	}
	defer f.Close()
	for {
		if _, err := io.Copy(w, f); err != nil {
			return fmt.Errorf("read console log: %w", err)
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}
