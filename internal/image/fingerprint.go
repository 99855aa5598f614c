package image

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"

	"banger/internal/errdefs"
)

// FingerprintSSHPublicKey returns the SHA256 fingerprint of the key in an
// authorized_keys line, as ssh-keygen -lf prints it ("SHA256:...").
func FingerprintSSHPublicKey(authorizedKeyLine string) (string, error) {
	key, err := parseAuthorizedKey(authorizedKeyLine)
	if err != nil {
		return "", err
	}
	return ssh.FingerprintSHA256(key), nil
}

// parseAuthorizedKey parses exactly one authorized_keys line.
func parseAuthorizedKey(line string) (ssh.PublicKey, error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return nil, errdefs.Invalid(fmt.Errorf("ssh public key is empty"))
	}
	if strings.ContainsAny(line, "\n\r") {
		return nil, errdefs.Invalid(fmt.Errorf("ssh public key must be a single authorized_keys line"))
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, errdefs.Invalid(fmt.Errorf("parse ssh public key: %w", err))
	}
	return key, nil
}

// digestPrefix starts every digest this package reports.
const digestPrefix = "sha256:"

// AgentDigest returns "sha256:<hex>" of the banger-agent binary at path:
// what Result.AgentDigest records for an image built with it. An image
// whose AgentDigest differs from the agent bangerd would install now is
// out of date.
func AgentDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	return digestPrefix + hex.EncodeToString(h.Sum(nil)), nil
}
