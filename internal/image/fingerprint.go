package image

import (
	"fmt"
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
