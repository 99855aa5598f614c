package image

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// mirrorProbeTimeout bounds the check that the mirror answers.
const mirrorProbeTimeout = 10 * time.Second

// probeMirror checks that the mirror serves the suite's release file.
func probeMirror(ctx context.Context, mirror, suite string) error {
	if strings.HasPrefix(mirror, "file:") {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, mirrorProbeTimeout)
	defer cancel()
	url := strings.TrimSuffix(mirror, "/") + "/dists/" + suite + "/InRelease"
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
