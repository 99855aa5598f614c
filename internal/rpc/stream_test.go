package rpc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"banger/internal/errdefs"
)

type streamParams struct {
	Fail string `json:"fail"` // "before", "during" or ""
}

type streamResult struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// streamServer has one stream method that hashes its body, or fails
// before asking for it, or after reading a little of it.
func streamServer() *Server {
	s := NewServer(slog.New(slog.DiscardHandler))
	RegisterStream(s, "hash", func(ctx context.Context, p streamParams, body io.Reader) (streamResult, error) {
		if p.Fail == "before" {
			return streamResult{}, errdefs.WithKind(errdefs.ErrUnavailable, errors.New("no channel to the guest"))
		}
		CallFrom(ctx).Ready()
		if p.Fail == "during" {
			io.CopyN(io.Discard, body, 10)
			return streamResult{}, errors.New("the guest refused the stream")
		}
		h := sha256.New()
		n, err := io.Copy(h, body)
		if err != nil {
			return streamResult{}, err
		}
		return streamResult{Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
	})
	return s
}

func TestCallStream(t *testing.T) {
	c := &Client{Socket: startServer(t, streamServer())}
	data := bytes.Repeat([]byte("stream\x00\n"), 1<<20) // 8 MiB, over the request limit
	sum := sha256.Sum256(data)

	var got streamResult
	err := c.CallStream(t.Context(), "hash", streamParams{}, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, &got)
	if err != nil || got.Bytes != int64(len(data)) || got.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("stream of %d bytes: got %+v, %v, want its length and hash", len(data), got, err)
	}

	sent := false
	err = c.CallStream(t.Context(), "hash", streamParams{Fail: "before"}, func(w io.Writer) error {
		sent = true
		return nil
	}, nil)
	if !errors.Is(err, ErrStreamNotStarted) || !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "no channel") || sent {
		t.Errorf("failure before ready: got %v (sent %v), want ErrStreamNotStarted with the method's unavailable error and nothing sent", err, sent)
	}

	err = c.CallStream(t.Context(), "hash", streamParams{Fail: "during"}, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, nil)
	if err == nil || errors.Is(err, ErrStreamNotStarted) || !strings.Contains(err.Error(), "refused the stream") {
		t.Errorf("failure during the stream: got %v, want the method's error", err)
	}

	err = c.CallStream(t.Context(), "hash", streamParams{}, func(w io.Writer) error {
		w.Write(data[:100])
		return errors.New("source broke")
	}, &got)
	if err == nil || !strings.Contains(err.Error(), "source broke") {
		t.Errorf("a send that fails: got %v, want its error", err)
	}
}
