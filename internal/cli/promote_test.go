package cli

import (
	"bytes"
	"strings"
	"testing"

	"banger/internal/api"
)

func TestPrintPruneResult(t *testing.T) {
	entries := []api.CacheEntry{
		{Kind: api.CacheLayer, Path: "/c/oci/blobs/sha256/ab", Bytes: 3 << 20},
		{Kind: api.CachePackages, Path: "/p/bookworm", Bytes: 1 << 20, Files: 12},
	}
	tests := []struct {
		name string
		res  api.CachePruneResult
		want []string
	}{
		{"nothing", api.CachePruneResult{DryRun: true}, []string{"nothing to prune"}},
		{"dry run", api.CachePruneResult{DryRun: true, Entries: entries, Bytes: 4 << 20, Notes: []string{"layers kept: an image pull is running"}},
			[]string{"KIND", "layer", "3.0 MiB", "/c/oci/blobs/sha256/ab", "/p/bookworm (12 files)", "would free 4.0 MiB", "note: layers kept: an image pull is running"}},
		{"removed", api.CachePruneResult{Entries: entries, Bytes: 4 << 20}, []string{"freed 4.0 MiB"}},
		{"failed entry", api.CachePruneResult{Entries: []api.CacheEntry{{Kind: api.CacheKernel, Path: "/k", Error: "permission denied"}}}, []string{"error: permission denied", "freed 0 B"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := printPruneResult(&buf, tc.res); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, buf.String())
				}
			}
			if !tc.res.DryRun && strings.Contains(buf.String(), "would free") {
				t.Errorf("output of a real prune says would free:\n%s", buf.String())
			}
		})
	}
}

func TestImagePromoteArgs(t *testing.T) {
	g := &globals{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	tests := []struct {
		name string
		args []string
	}{
		{"no args", nil},
		{"one arg", []string{"vm"}},
		{"three args", []string{"vm", "img", "extra"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newImagePromoteCmd(g)
			if err := cmd.Args(cmd, tc.args); err == nil {
				t.Errorf("args %q accepted, want an error", tc.args)
			}
		})
	}
	cmd := newImageCacheCmd(g)
	prune, _, err := cmd.Find([]string{"prune"})
	if err != nil || prune.Name() != "prune" {
		t.Fatalf("image cache prune: got %v, %v", prune, err)
	}
	for _, f := range []string{"dry-run", "packages", "json"} {
		if prune.Flags().Lookup(f) == nil {
			t.Errorf("image cache prune has no --%s", f)
		}
	}
}
