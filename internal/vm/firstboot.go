package vm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"banger/internal/errdefs"
	"banger/internal/image"
	"banger/internal/model"
)

// A VM of an image without systemd or sshd boots through
// image.FirstBootInit, which installs them at the VM's first boot. That
// needs NAT (the guest fetches packages from the image's mirror) and
// more time than a plain boot; once SSH answered, firstBootMarker in the
// VM's dir records that the install is done, so later starts need
// neither.

// firstBootMarker, in a VM's dir, says the VM's first boot completed.
const firstBootMarker = "firstboot-done"

// firstBootLinePrefix starts every console line of image.FirstBootInit.
const firstBootLinePrefix = "banger-firstboot: "

// firstBootState is where a VM stands with its image's first boot.
type firstBootState struct {
	image.FirstBoot
	// Image: the VM's image boots through image.FirstBootInit.
	Image bool
	// Pending: the VM has yet to complete its first boot.
	Pending bool
}

// firstBootOf reads the first-boot state of rec, a VM of img.
func firstBootOf(img model.Image, rec model.VMRecord) (firstBootState, error) {
	f, ok, err := image.ReadFirstBoot(img.ArtifactDir)
	if err != nil {
		return firstBootState{}, fmt.Errorf("image %q: %w", img.Name, err)
	}
	if !ok {
		return firstBootState{}, nil
	}
	st := firstBootState{FirstBoot: f, Image: true, Pending: true}
	if rec.Runtime.VMDir != "" {
		if _, err := os.Stat(filepath.Join(rec.Runtime.VMDir, firstBootMarker)); err == nil {
			st.Pending = false
		} else if consoleSaysInstalled(consolePath(rec)) {
			// The install finished while no start waited for it (the
			// daemon restarted during the first boot): the console
			// says so; record it.
			st.Pending = false
			_ = markFirstBootDone(rec)
		}
	}
	return st, nil
}

// consolePath is rec's console log.
func consolePath(rec model.VMRecord) string {
	if rec.Runtime.LogPath != "" {
		return rec.Runtime.LogPath
	}
	return filepath.Join(rec.Runtime.VMDir, "console.log")
}

// consoleSaysInstalled reports whether the console log at path holds
// image.FirstBootInstalledLine on a line of its own.
func consoleSaysInstalled(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.TrimRight(sc.Text(), "\r") == image.FirstBootInstalledLine {
			return true
		}
	}
	return false
}

// FirstBootPending returns what rec, a VM of img, installs at a first
// boot it has yet to complete; ok is false when it has none pending.
func FirstBootPending(img model.Image, rec model.VMRecord) (f image.FirstBoot, ok bool, err error) {
	st, err := firstBootOf(img, rec)
	return st.FirstBoot, st.Pending, err
}

// checkNAT refuses to boot rec, a VM of img, when its pending first
// boot needs NAT it does not have.
func (st firstBootState) checkNAT(img model.Image, rec model.VMRecord) error {
	if !st.Pending || rec.Spec.NATEnabled {
		return nil
	}
	name := rec.Name
	if name == "" {
		name = "NAME"
	}
	return errdefs.Invalid(fmt.Errorf(
		"image %q has no %s: a VM of it %s, which needs NAT to reach the package mirror; use --nat (banger vm run --nat --image %s, or banger vm set %s --nat)",
		img.Name, strings.Join(st.Installs, " and "), st.Describe(), img.Name, name))
}

// markFirstBootDone records that rec's first boot completed.
func markFirstBootDone(rec model.VMRecord) error {
	if err := os.WriteFile(filepath.Join(rec.Runtime.VMDir, firstBootMarker), []byte(model.Now().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return fmt.Errorf("record first boot: %w", err)
	}
	return nil
}

// consoleSize is the length of the console log before a boot appends to
// it (0 when there is none yet).
func consoleSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// waitFirstBoot waits for SSH of a VM in its first boot: up to
// FirstBootTimeout, reporting the installer's console lines as progress
// and failing with its error line as soon as it prints one. The console
// log is read from offset, where this boot's output starts.
func (s *Service) waitFirstBoot(ctx context.Context, rec model.VMRecord, h handles, f image.FirstBoot, offset int64, report func(step, msg string)) error {
	if report != nil {
		report("first-boot", fmt.Sprintf("%s %s; this takes a few minutes", rec.Name, f.Describe()))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchConsole(ctx, rec.Runtime.LogPath, offset, func(line string) {
			if msg, ok := strings.CutPrefix(line, image.FirstBootErrorPrefix); ok {
				cancel(errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("first boot: %s", msg)))
				return
			}
			if msg, ok := strings.CutPrefix(line, firstBootLinePrefix); ok && report != nil {
				report("first-boot", msg)
			}
		})
	}()
	err := s.waitSSHWithin(ctx, rec, h, s.FirstBootTimeout)
	cause := context.Cause(ctx)
	cancel(nil)
	<-done
	if cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
		return cause
	}
	if err != nil {
		return err
	}
	return markFirstBootDone(rec)
}

// consolePoll is how often watchConsole looks for new console output.
var consolePoll = 250 * time.Millisecond

// watchConsole calls line for each complete line appended to the file
// at path after offset, until ctx ends. A missing file counts as empty.
func watchConsole(ctx context.Context, path string, offset int64, line func(string)) {
	var partial []byte
	buf := make([]byte, 64<<10)
	tick := time.NewTicker(consolePoll)
	defer tick.Stop()
	for {
		if f, err := os.Open(path); err == nil {
			for {
				n, err := f.ReadAt(buf, offset)
				offset += int64(n)
				partial = append(partial, buf[:n]...)
				for {
					i := bytes.IndexByte(partial, '\n')
					if i < 0 {
						break
					}
					line(strings.TrimRight(string(partial[:i]), "\r"))
					partial = partial[i+1:]
				}
				if len(partial) > len(buf) { // a line that never ends
					line(string(partial))
					partial = partial[:0]
				}
				if err != nil || n == 0 {
					break // io.EOF: all read for now
				}
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
