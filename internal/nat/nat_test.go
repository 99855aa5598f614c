package nat

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"banger/internal/errdefs"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fakeNft stands in for the nft tool: it keeps the comments of the inet
// table's rules from the last script and lists them back as nft's JSON.
type fakeNft struct {
	exists   bool
	comments []string
	scripts  []string
	failNext error // returned once by the next apply
}

var commentRE = regexp.MustCompile(`comment "([^"]*)"`)

func (f *fakeNft) run(_ context.Context, stdin []byte, args ...string) ([]byte, error) {
	switch strings.Join(args, " ") {
	case "-f -":
		if err := f.failNext; err != nil {
			f.failNext = nil
			return nil, err
		}
		script := string(stdin)
		f.scripts = append(f.scripts, script)
		inet, _, _ := strings.Cut(script, "table bridge ")
		f.exists = strings.Contains(inet, "table inet banger_br-fc {\n")
		f.comments = nil
		for _, m := range commentRE.FindAllStringSubmatch(inet, -1) {
			f.comments = append(f.comments, m[1])
		}
		return nil, nil
	case "-j list table inet banger_br-fc":
		if !f.exists {
			return nil, errors.New("nft: exit status 1: Error: No such file or directory")
		}
		type rule struct {
			Family  string `json:"family"`
			Table   string `json:"table"`
			Comment string `json:"comment"`
		}
		var objs []map[string]any
		for _, c := range f.comments {
			objs = append(objs, map[string]any{"rule": rule{"inet", "banger_br-fc", c}})
		}
		return json.Marshal(map[string]any{"nftables": objs})
	case "-j list tables inet":
		if f.exists {
			return []byte(`{"nftables": [{"table": {"family": "inet", "name": "banger_br-fc"}}]}`), nil
		}
		return []byte(`{"nftables": [{"table": {"family": "inet", "name": "other"}}]}`), nil
	}
	return nil, errors.New("fake nft: unexpected args " + strings.Join(args, " "))
}

func newFakeManager(t *testing.T, initialForward string) (*Manager, *fakeNft) {
	t.Helper()
	dir := t.TempDir()
	proc := filepath.Join(dir, "ip_forward")
	if err := os.WriteFile(proc, []byte(initialForward+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testCfg()
	cfg.StateFile = filepath.Join(dir, "nat-ip-forward")
	nft := &fakeNft{}
	m, err := newManager(cfg, nil, nft.run, proc)
	if err != nil {
		t.Fatalf("newManager: %v", err)
	}
	return m, nft
}

func ids(t *testing.T, m *Manager) []string {
	t.Helper()
	es, err := m.Entries(t.Context())
	if err != nil {
		t.Fatalf("Entries: %v", err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.VMID)
	}
	return out
}

func TestManagerAddRemove(t *testing.T) {
	m, nft := newFakeManager(t, "0")
	ctx := t.Context()
	a := entry("aaaa", "172.16.0.2", "bgraaaa", "02:00:00:00:00:0a")
	b := entry("bbbb", "172.16.0.3", "bgrpbbbb", "")

	if got := ids(t, m); len(got) != 0 {
		t.Fatalf("Entries before anything = %v, want none", got)
	}
	// Remove of an unknown VM with no table writes nothing.
	if err := m.Remove(ctx, "nope"); err != nil {
		t.Fatalf("Remove before anything: %v", err)
	}
	if len(nft.scripts) != 0 {
		t.Errorf("Remove of an unknown vm ran %d scripts, want 0", len(nft.scripts))
	}

	for i := range 2 {
		if err := m.Add(ctx, a); err != nil {
			t.Fatalf("Add a, call %d: %v", i+1, err)
		}
	}
	if err := m.Add(ctx, b); err != nil {
		t.Fatalf("Add b: %v", err)
	}
	got, err := m.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Entry{a, b}; !slices.Equal(got, want) {
		t.Errorf("Entries = %v, want %v", got, want)
	}
	if got := readTrim(t, m.fwd.proc); got != "1" {
		t.Errorf("ip_forward with nat guests = %q, want 1", got)
	}

	// Re-adding with a changed tap replaces the entry.
	a2 := a
	a2.Tap = "bgrpnew"
	if err := m.Add(ctx, a2); err != nil {
		t.Fatalf("Add a with a new tap: %v", err)
	}
	last := nft.scripts[len(nft.scripts)-1]
	if strings.Contains(last, `"bgraaaa"`) || !strings.Contains(last, `"bgrpnew"`) {
		t.Errorf("script after re-add still names the old tap or lacks the new one:\n%s", last)
	}

	// Another VM's address is a conflict and changes nothing.
	n := len(nft.scripts)
	err = m.Add(ctx, entry("cccc", "172.16.0.3", "bgrcccc", ""))
	if !errdefs.IsConflict(err) {
		t.Errorf("Add with b's ip: got %v, want errdefs.ErrConflict", err)
	}
	if err == nil || !strings.Contains(err.Error(), `add nat for vm "cccc"`) {
		t.Errorf("got error %v, want it to name the operation and vm", err)
	}
	if len(nft.scripts) != n {
		t.Errorf("a conflicting Add ran a script")
	}

	if err := m.Remove(ctx, "aaaa"); err != nil {
		t.Fatalf("Remove a: %v", err)
	}
	if got, want := ids(t, m), []string{"bbbb"}; !slices.Equal(got, want) {
		t.Errorf("after Remove a: ids %v, want %v", got, want)
	}
	if got := readTrim(t, m.fwd.proc); got != "1" {
		t.Errorf("ip_forward with one nat guest left = %q, want 1", got)
	}
	for i := range 2 {
		if err := m.Remove(ctx, "bbbb"); err != nil {
			t.Fatalf("Remove b call %d: %v", i+1, err)
		}
	}
	if got := ids(t, m); len(got) != 0 {
		t.Errorf("after removing all: ids %v, want none", got)
	}
	if got := readTrim(t, m.fwd.proc); got != "0" {
		t.Errorf("ip_forward after the last nat guest = %q, want 0 restored", got)
	}
	if stateExists(t, m.fwd) {
		t.Error("state file left after the last nat guest")
	}
	// The base rules stay: guests without NAT remain shut in.
	if !nft.exists {
		t.Error("table gone after the last Remove, want the base chains kept")
	}
}

func TestManagerSync(t *testing.T) {
	m, nft := newFakeManager(t, "0")
	ctx := t.Context()
	a := entry("aaaa", "172.16.0.2", "bgraaaa", "")
	b := entry("bbbb", "172.16.0.3", "bgrbbbb", "")
	if err := m.Sync(ctx, []Entry{b, a}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got, want := ids(t, m), []string{"aaaa", "bbbb"}; !slices.Equal(got, want) {
		t.Errorf("ids %v, want %v", got, want)
	}
	if err := m.Sync(ctx, []Entry{b}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got, want := ids(t, m), []string{"bbbb"}; !slices.Equal(got, want) {
		t.Errorf("ids %v, want %v", got, want)
	}
	if last := nft.scripts[len(nft.scripts)-1]; strings.Contains(last, "aaaa") || strings.Contains(last, "172.16.0.2") {
		t.Errorf("script after Sync without a mentions it:\n%s", last)
	}
	// Bad input changes nothing.
	n := len(nft.scripts)
	if err := m.Sync(ctx, []Entry{a, a}); !errdefs.IsConflict(err) {
		t.Errorf("Sync with a twice: got %v, want errdefs.ErrConflict", err)
	}
	if len(nft.scripts) != n {
		t.Error("a rejected Sync ran a script")
	}
	if err := m.Sync(ctx, nil); err != nil {
		t.Fatalf("Sync(nil): %v", err)
	}
	if got := readTrim(t, m.fwd.proc); got != "0" {
		t.Errorf("ip_forward after Sync(nil) = %q, want 0", got)
	}
}

func TestManagerFailures(t *testing.T) {
	t.Run("nft fails: forwarding untouched", func(t *testing.T) {
		m, nft := newFakeManager(t, "0")
		nft.failNext = errors.New("nft: exit status 1: Error: Could not process rule")
		err := m.Add(t.Context(), entry("aaaa", "172.16.0.2", "bgraaaa", ""))
		if err == nil || !strings.Contains(err.Error(), "install rules") {
			t.Fatalf("Add with failing nft = %v, want an install rules error", err)
		}
		if got := readTrim(t, m.fwd.proc); got != "0" {
			t.Errorf("ip_forward after a failed Add = %q, want 0", got)
		}
		if stateExists(t, m.fwd) {
			t.Error("state file written although the rules failed")
		}
	})
	t.Run("teardown restores", func(t *testing.T) {
		m, nft := newFakeManager(t, "0")
		if err := m.Add(t.Context(), entry("aaaa", "172.16.0.2", "bgraaaa", "")); err != nil {
			t.Fatal(err)
		}
		if err := m.Teardown(t.Context()); err != nil {
			t.Fatalf("Teardown: %v", err)
		}
		if nft.exists {
			t.Error("table exists after Teardown")
		}
		if got := readTrim(t, m.fwd.proc); got != "0" {
			t.Errorf("ip_forward after Teardown = %q, want 0", got)
		}
		if got := nft.scripts[len(nft.scripts)-1]; got != teardownScript("br-fc") {
			t.Errorf("Teardown ran %q, want the teardown script", got)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		_, err := newManager(Config{}, nil, (&fakeNft{}).run, "/nonexistent")
		if !errdefs.IsInvalid(err) {
			t.Errorf("newManager(Config{}) = %v, want errdefs.ErrInvalid", err)
		}
	})
	t.Run("list fails", func(t *testing.T) {
		m, _ := newManager(testCfg(), nil, func(context.Context, []byte, ...string) ([]byte, error) {
			return nil, errors.New("nft: boom")
		}, "/nonexistent")
		if _, err := m.Entries(t.Context()); err == nil || !strings.Contains(err.Error(), "boom") {
			t.Errorf("Entries with failing nft = %v, want the nft error", err)
		}
	})
}
