package nat

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// procIPForward is the IPv4 forwarding switch of the network namespace
// of the thread that opens it.
const procIPForward = "/proc/sys/net/ipv4/ip_forward"

// forwarding turns IPv4 forwarding on while NAT guests exist and gives
// it back its earlier value after. The state file is the memory: it
// holds the value from before banger turned forwarding on, and exists
// exactly while banger holds it on, so a daemon that crashed and starts
// again still knows what to restore.
type forwarding struct {
	proc   string // the sysctl file, procIPForward outside tests
	state  string // the state file
	logger *slog.Logger
}

// settle makes forwarding match whether NAT guests exist: on (after
// remembering the current value, unless remembered already) when they
// do, the remembered value (then forgetting it) when they do not.
func (f forwarding) settle(natGuests bool) error {
	if natGuests {
		return f.enable()
	}
	return f.restore()
}

func (f forwarding) enable() error {
	if _, err := f.remembered(); errors.Is(err, os.ErrNotExist) {
		cur, err := f.read()
		if err != nil {
			return err
		}
		if err := writeFileAtomic(f.state, []byte(cur+"\n")); err != nil {
			return fmt.Errorf("remember ip_forward in %s: %w", f.state, err)
		}
		f.logger.Info("ip forwarding taken over", "previous", cur, "state_file", f.state)
	} else if err != nil {
		// A damaged memory is kept for a person to look at; forwarding
		// still goes on, since a NAT guest needs it.
		f.logger.Warn("ip_forward state file is unreadable; keeping it", "error", err)
	}
	cur, err := f.read()
	if err != nil {
		return err
	}
	if cur == "1" {
		return nil
	}
	if err := os.WriteFile(f.proc, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable ip forwarding: %w", err)
	}
	f.logger.Info("ip forwarding enabled")
	return nil
}

func (f forwarding) restore() error {
	prev, err := f.remembered()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore ip forwarding: %w: remove the file to leave forwarding as it is", err)
	}
	if err := os.WriteFile(f.proc, []byte(prev+"\n"), 0o644); err != nil {
		return fmt.Errorf("restore ip forwarding to %s: %w", prev, err)
	}
	if err := os.Remove(f.state); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget ip_forward state: %w", err)
	}
	f.logger.Info("ip forwarding restored", "value", prev)
	return nil
}

// read returns the current value of the sysctl, "0" or "1".
func (f forwarding) read() (string, error) {
	data, err := os.ReadFile(f.proc)
	if err != nil {
		return "", fmt.Errorf("read ip_forward: %w", err)
	}
	v := strings.TrimSpace(string(data))
	if v != "0" && v != "1" {
		return "", fmt.Errorf("read ip_forward: unexpected value %q in %s", v, f.proc)
	}
	return v, nil
}

// remembered returns the value in the state file; a missing file is
// os.ErrNotExist.
func (f forwarding) remembered() (string, error) {
	data, err := os.ReadFile(f.state)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(data))
	if v != "0" && v != "1" {
		return "", fmt.Errorf("ip_forward state file %s holds %q, want 0 or 1", f.state, v)
	}
	return v, nil
}

// writeFileAtomic replaces path with data via a synced temporary file in
// the same directory, creating the directory if needed.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
