package oci

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// KeychainFromDockerConfig returns a keychain that reads credentials
// from dir/config.json (a Docker config directory, usually ~/.docker of
// the user who asked for the pull: a daemon running as root passes the
// owner's, not its own), credential helpers included. With no such file
// every registry is accessed anonymously.
func KeychainFromDockerConfig(dir string) authn.Keychain {
	return dockerConfigKeychain{dir: dir}
}

type dockerConfigKeychain struct{ dir string }

func (k dockerConfigKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	if st, err := os.Stat(filepath.Join(k.dir, config.ConfigFileName)); err != nil || st.IsDir() {
		return authn.Anonymous, nil
	}
	cf, err := config.Load(k.dir)
	if err != nil {
		return nil, fmt.Errorf("read docker config in %s: %w", k.dir, err)
	}
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		cfg, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s from %s: %w", key, k.dir, err)
		}
		if cfg.Username != "" || cfg.Password != "" || cfg.Auth != "" || cfg.IdentityToken != "" || cfg.RegistryToken != "" {
			return authn.FromConfig(authn.AuthConfig{
				Username:      cfg.Username,
				Password:      cfg.Password,
				Auth:          cfg.Auth,
				IdentityToken: cfg.IdentityToken,
				RegistryToken: cfg.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}
