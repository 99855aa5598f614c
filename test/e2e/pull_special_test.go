//go:build e2e

package e2e

import (
	"archive/tar"
	"fmt"
	"strings"
	"testing"
)

// specialDir is where the second layer of the test image puts the
// entries the dumped default image cannot carry (debugfs rdump makes
// each hard link a file of its own): a hard link pair, a hard link to a
// file of the first layer, device nodes and a fifo, with owners.
const specialDir = "opt/banger-special"

// crossLinked is a regular file of the default image that the second
// layer hard-links to.
const crossLinked = "usr/lib/os-release"

// specialEntries are the second layer's special entries.
func specialEntries() []tarEntry {
	return []tarEntry{
		{name: specialDir + "/", dir: true, mode: 0o755},
		{name: specialDir + "/a", body: "linked\n", mode: 0o640, uid: 1234, gid: 2345},
		{name: specialDir + "/b", typ: tar.TypeLink, link: specialDir + "/a"},
		{name: specialDir + "/os-release", typ: tar.TypeLink, link: crossLinked},
		{name: specialDir + "/chr", typ: tar.TypeChar, major: 10, minor: 200, mode: 0o620, gid: 5},
		{name: specialDir + "/blk", typ: tar.TypeBlock, major: 7, minor: 3, mode: 0o660, gid: 6},
		{name: specialDir + "/fifo", typ: tar.TypeFifo, mode: 0o600, uid: 1234, gid: 2345},
	}
}

// checkSpecials checks, inside the running VM vm of an image pulled
// with specialEntries in a layer, that the import kept them: hard links
// share an inode with two links (within the layer and to a file of a
// lower layer), device nodes keep their type and numbers, the fifo is
// one, and each keeps its owner and mode.
func checkSpecials(t *testing.T, e *env, vm string) {
	t.Helper()
	paths := []string{"a", "b", "os-release", "chr", "blk", "fifo"}
	args := []string{"vm", "exec", vm, "--", "stat", "-c", "%n|%F|%h|%i|%u:%g|%a|%t:%T"}
	for _, p := range paths {
		args = append(args, "/"+specialDir+"/"+p)
	}
	r := e.ok(append(args, "/"+crossLinked)...)
	t.Logf("stat in the guest:\n%s", r.stdout)
	type stat struct{ kind, links, inode, owner, mode, dev string }
	got := map[string]stat{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 7 {
			t.Fatalf("stat line %q: want 7 fields", line)
		}
		got[f[0]] = stat{kind: f[1], links: f[2], inode: f[3], owner: f[4], mode: f[5], dev: f[6]}
	}
	at := func(p string) stat {
		s, ok := got["/"+specialDir+"/"+p]
		if !ok {
			t.Fatalf("stat of /%s/%s missing from:\n%s", specialDir, p, r.stdout)
		}
		return s
	}
	want := []struct {
		path              string
		kind, owner, mode string
		dev               string // major:minor in hex as stat prints them, for device nodes
	}{
		{"a", "regular file", "1234:2345", "640", ""},
		{"chr", "character special file", "0:5", "620", fmt.Sprintf("%x:%x", 10, 200)},
		{"blk", "block special file", "0:6", "660", fmt.Sprintf("%x:%x", 7, 3)},
		{"fifo", "fifo", "1234:2345", "600", ""},
	}
	for _, w := range want {
		s := at(w.path)
		if s.kind != w.kind || s.owner != w.owner || s.mode != w.mode || (w.dev != "" && s.dev != w.dev) {
			t.Errorf("/%s/%s: got %s %s mode %s dev %s, want %s %s mode %s dev %s",
				specialDir, w.path, s.kind, s.owner, s.mode, s.dev, w.kind, w.owner, w.mode, w.dev)
		}
	}
	a, b := at("a"), at("b")
	if a.inode != b.inode || a.links != "2" || b.links != "2" || b.kind != "regular file" {
		t.Errorf("hard link pair a, b: inodes %s, %s with %s, %s links, want one inode with 2 links", a.inode, b.inode, a.links, b.links)
	}
	lower, ok := got["/"+crossLinked]
	if up := at("os-release"); !ok || up.inode != lower.inode || up.links != "2" || lower.links != "2" {
		t.Errorf("hard link to the lower layer's /%s: got %+v and %+v, want one inode with 2 links", crossLinked, up, lower)
	}
	if r := e.ok("vm", "exec", vm, "--", "cat", "/"+specialDir+"/b"); r.stdout != "linked\n" {
		t.Errorf("/%s/b: got %q, want the content of a", specialDir, r.stdout)
	}
}
