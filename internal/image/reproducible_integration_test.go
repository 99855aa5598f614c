//go:build integration

package image

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReproducible builds the default recipe plus one file and two
// commands twice and compares the listings of the two rootfs images:
// the same recipe and package versions must give the same content. It
// runs offline from the package cache when the mirror is unreachable
// and takes two builds' time (minutes).
func TestReproducible(t *testing.T) {
	cache := requireImageBuild(t)
	agentPath := buildTestAgent(t)
	r := DefaultRecipe()
	const motd = "built from a banger recipe\n"
	r.Files = append(r.Files, RecipeFile{Path: "/etc/banger-recipe-test/motd", Content: []byte(motd), Mode: 0o640, Owner: "root:adm"})
	r.Commands = append(r.Commands,
		// useradd writes dates into /etc/shadow: SOURCE_DATE_EPOCH must
		// pin them.
		"useradd --create-home --shell /bin/bash dev",
		"echo done > /var/lib/banger-recipe-test",
	)
	var listings [2][]byte
	var results [2]Result
	for i := range listings {
		art := filepath.Join(t.TempDir(), "artifacts")
		start := time.Now()
		res, err := Build(t.Context(), BuildOptions{
			Name:         "recipe-test",
			Recipe:       &r,
			ArtifactDir:  art,
			CacheDir:     cache,
			PackageCache: testPackageCache(),
			SSHPublicKey: testKeyEd25519,
			AgentPath:    agentPath,
		})
		if err != nil {
			t.Fatalf("build %d: %v", i+1, err)
		}
		t.Logf("build %d in %s: listing %s", i+1, time.Since(start).Round(time.Second), res.ListingSHA256)
		l, err := Listing(t.Context(), res.RootfsPath)
		if err != nil {
			t.Fatal(err)
		}
		if got := ListingDigest(l); got != res.ListingSHA256 {
			t.Errorf("build %d: got Listing digest %s, want the build's %s", i+1, got, res.ListingSHA256)
		}
		listings[i], results[i] = l, res
	}
	if diff := listingDiff(string(listings[0]), string(listings[1])); diff != "" {
		t.Errorf("the two builds differ (- first, + second):\n%s", diff)
	}
	if out := os.Getenv("BANGER_LISTING_OUT"); out != "" {
		_ = os.WriteFile(out, listings[0], 0o644)
	}

	sum := sha256.Sum256([]byte(motd))
	lines := listingLines(string(listings[0]))
	for _, tt := range []struct{ path, want string }{
		{"/etc/banger-recipe-test/motd", "file\t0640\t0:4\t27\tsha256:" + hex.EncodeToString(sum[:])},
		{"/etc/banger-recipe-test", "dir\t0755\t0:0\t0\t-"},
		{"/var/lib/banger-recipe-test", "file\t0644\t0:0\t5\t"},
		{"/home/dev", "dir\t0755\t1000:1000\t0\t-"},
		{recipeModulesPath, "file\t0644\t0:0\t"},
		{"/etc/machine-id", "file\t0644\t0:0\t0\tsha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			if got, ok := lines[tt.path]; !ok || !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %q, want it to start with %q", got, tt.want)
			}
		})
	}
}

// listingLines maps each path of a listing to the rest of its line.
func listingLines(l string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(l, "\n"), "\n") {
		p, rest, _ := strings.Cut(line, "\t")
		out[p] = rest
	}
	return out
}

// listingDiff shows the lines only one listing has, at most 60.
func listingDiff(a, b string) string {
	la, lb := listingLines(a), listingLines(b)
	var out []string
	for p, ra := range la {
		if rb, ok := lb[p]; !ok || ra != rb {
			out = append(out, "- "+p+"\t"+ra)
		}
	}
	for p, rb := range lb {
		if ra, ok := la[p]; !ok || ra != rb {
			out = append(out, "+ "+p+"\t"+rb)
		}
	}
	if len(out) > 60 {
		out = append(out[:60], "...")
	}
	return strings.Join(out, "\n")
}
