package image

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseLsOutput(t *testing.T) {
	dirs := []string{"/", "/dev", "/lost+found", "/my dir"}
	out := strings.Join([]string{
		`debugfs: ls -p "/"`,
		"/2/040755/0/0/.//",
		"/2/040755/0/0/..//",
		"/11/040700/0/0/lost+found//",
		"/12/120777/0/0/bin/7/",
		"/13/100640/0/42/shadow/549/",
		"/14/104755/0/0/su/72000/",
		"/15/040755/0/0/dev//",
		"/16/040755/0/0/my dir//",
		"",
		`debugfs: ls -p "/dev"`,
		"/15/040755/0/0/.//",
		"/2/040755/0/0/..//",
		"/17/020666/0/0/null/0/",
		"/18/060660/0/6/vda/0/",
		"/19/010644/0/0/fifo/0/",
		"/20/140755/0/0/sock/0/",
		"",
		`debugfs: ls -p "/lost+found"`,
		"/11/040700/0/0/.//",
		"/2/040755/0/0/..//",
		"/0/000000/0/0//0/",
		"/0/000000/0/0//0/",
		`debugfs: ls -p "/my dir"`,
		"/16/040755/0/0/.//",
		"/2/040755/0/0/..//",
		"",
	}, "\n")
	got, err := parseLsOutput(out, dirs)
	if err != nil {
		t.Fatal(err)
	}
	want := []listingEntry{
		{path: "/", typ: "dir", perm: 0o755},
		{path: "/bin", typ: "symlink", perm: 0o777, size: 7},
		{path: "/dev", typ: "dir", perm: 0o755},
		{path: "/dev/fifo", typ: "fifo", perm: 0o644},
		{path: "/dev/null", typ: "char", perm: 0o666},
		{path: "/dev/sock", typ: "socket", perm: 0o755},
		{path: "/dev/vda", typ: "block", perm: 0o660, gid: 6},
		{path: "/lost+found", typ: "dir", perm: 0o700},
		{path: "/my dir", typ: "dir", perm: 0o755},
		{path: "/shadow", typ: "file", perm: 0o640, gid: 42, size: 549},
		{path: "/su", typ: "file", perm: 0o4755, size: 72000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}

	bad := []struct{ name, out string }{
		{"missing directory", `debugfs: ls -p "/"` + "\n/2/040755/0/0/.//\n"},
		{"wrong order", strings.Replace(out, `ls -p "/dev"`, `ls -p "/etc"`, 1)},
		{"bad line", strings.Replace(out, "/13/100640/0/42/shadow/549/", "/13/100640/0/42/shadow/549", 1)},
		{"bad mode", strings.Replace(out, "/13/100640/", "/13/170640/", 1)},
		{"output before a command", "/2/040755/0/0/.//\n" + out},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseLsOutput(tt.out, dirs); err == nil {
				t.Error("got no error, want one")
			}
		})
	}
}

func TestListingQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/usr/bin/ls", "/usr/bin/ls"},
		{"/my dir", `"/my dir"`},
		{"/tab\tname", `"/tab\tname"`},
		{`/back\slash`, `"/back\\slash"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := listingQuote(tt.in); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestListingDigest(t *testing.T) {
	if got, want := ListingDigest(nil), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
