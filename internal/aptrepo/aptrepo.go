// Package aptrepo makes a directory of .deb files a flat apt repository
// (a Packages index and a Release file beside them): the offline source
// of image builds, and the local mirrors of the first-boot tests. It
// runs dpkg-deb.
package aptrepo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
)

// cachedDebs lists the .deb files in dir, sorted.
func cachedDebs(dir string) ([]string, error) {
	debs, err := filepath.Glob(filepath.Join(dir, "*.deb"))
	if err != nil {
		return nil, err
	}
	sort.Strings(debs)
	return debs, nil
}

// Write makes dir, which holds .deb files, a flat apt repository of
// suite (a Packages index and a Release file beside the .debs) and
// returns the apt source line that points at it by path. A dir without
// .debs is ErrUnavailable.
func Write(ctx context.Context, dir, suite string) (string, error) {
	debs, err := cachedDebs(dir)
	if err != nil {
		return "", err
	}
	if len(debs) == 0 {
		return "", errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("the package cache %s is empty", dir))
	}
	var index bytes.Buffer
	for _, deb := range debs {
		stanza, err := packageStanza(ctx, deb)
		if err != nil {
			return "", err
		}
		index.WriteString(stanza)
		index.WriteString("\n")
	}
	sum := sha256.Sum256(index.Bytes())
	// The Release file names the suite: mmdebstrap selects packages by it.
	release := releaseFile(suite, hex.EncodeToString(sum[:]), index.Len())
	for _, f := range []struct {
		name string
		data []byte
	}{{"Packages", index.Bytes()}, {"Release", []byte(release)}} {
		tmp := filepath.Join(dir, f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, 0o644); err != nil {
			return "", fmt.Errorf("write package index: %w", err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			return "", fmt.Errorf("write package index: %w", err)
		}
	}
	return sourceLine(dir), nil
}

// releaseFile is the Release file of a flat repository holding one
// Packages index.
func releaseFile(suite, packagesSHA256 string, packagesSize int) string {
	return fmt.Sprintf("Origin: banger\nLabel: banger package cache\nSuite: %s\nCodename: %s\nArchitectures: amd64 all\nSHA256:\n %s %d Packages\n",
		suite, suite, packagesSHA256, packagesSize)
}

// sourceLine is the one-line apt source of a flat repository.
func sourceLine(dir string) string {
	return "deb [trusted=yes] file://" + dir + " ./"
}

// packageStanza is a .deb's control fields plus what an index adds.
func packageStanza(ctx context.Context, deb string) (string, error) {
	control, err := hostexec.Run(ctx, "dpkg-deb", "-f", deb)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", filepath.Base(deb), err)
	}
	f, err := os.Open(deb)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", filepath.Base(deb), err)
	}
	return indexStanza(string(control), filepath.Base(deb), size, hex.EncodeToString(h.Sum(nil)))
}

// indexStanza turns control fields into a Packages stanza.
func indexStanza(control, file string, size int64, sha string) (string, error) {
	control = strings.TrimRight(control, "\n")
	if !strings.HasPrefix(control, "Package: ") {
		return "", errors.New("control data of " + file + " does not start with Package:")
	}
	return fmt.Sprintf("%s\nFilename: ./%s\nSize: %d\nSHA256: %s\n", control, file, size, sha), nil
}
