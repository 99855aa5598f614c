package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Server answers the host's requests in the guest.
type Server struct {
	// ProcRoot is where procfs is mounted; "" means "/proc".
	ProcRoot string
	// Logger hears about bad requests; nil discards.
	Logger *slog.Logger
}

// Serve answers requests on conn with a default Server until conn reports
// EOF (nil) or an error, or ctx ends.
func Serve(ctx context.Context, conn io.ReadWriter) error {
	return (&Server{}).Serve(ctx, conn)
}

// Serve answers requests on conn until conn reports EOF (nil) or an
// error, or ctx ends (ctx.Err()). When conn has SetReadDeadline (net.Conn,
// *os.File), ctx's end interrupts a blocked read. Serve never closes conn.
func (s *Server) Serve(ctx context.Context, conn io.ReadWriter) error {
	if d, ok := conn.(interface{ SetReadDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { d.SetReadDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	for {
		line, err := readLine(r, MaxLine)
		var resp Response
		switch {
		case errors.Is(err, errLineTooLong):
			s.logger().Warn("dropped an over-long request line", "limit", MaxLine)
			resp = Response{V: ProtocolVersion, Error: fmt.Sprintf("request %v", err)}
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read request: %w", err)
		case len(bytes.TrimSpace(line)) == 0:
			continue // clients send an empty line before each request
		default:
			var req Request
			if json.Unmarshal(line, &req) == nil && req.V == ProtocolVersion && req.Method == MethodExec {
				// exec reads its stdin frames from the same stream.
				if err := s.serveExec(ctx, req, r, conn); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
						return nil
					}
					return err
				}
				continue
			}
			resp = s.handle(ctx, line)
		}
		out, err := json.Marshal(resp)
		if err != nil {
			return fmt.Errorf("encode response: %w", err)
		}
		if _, err := conn.Write(append(out, '\n')); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("write response: %w", err)
		}
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) procRoot() string {
	if s.ProcRoot == "" {
		return "/proc"
	}
	return s.ProcRoot
}

// handle answers one request line.
func (s *Server) handle(ctx context.Context, line []byte) Response {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		s.logger().Warn("bad request", "err", err)
		return Response{V: ProtocolVersion, Error: fmt.Sprintf("bad request: %v", err)}
	}
	resp := Response{V: ProtocolVersion, ID: req.ID}
	if req.V != ProtocolVersion {
		resp.Error = fmt.Sprintf("unsupported protocol version %d: this agent speaks version %d", req.V, ProtocolVersion)
		return resp
	}
	var result any
	var err error
	switch req.Method {
	case MethodHealth:
		result, err = ReadHealth(s.procRoot())
	case MethodPing:
		result = Pong{}
	case MethodPorts:
		var ls []Listener
		ls, err = ReadListeners(ctx, s.procRoot())
		result = Ports{Listeners: ls}
	default:
		resp.Error = fmt.Sprintf("unknown method %q (protocol version %d knows %s, %s, %s, %s)",
			req.Method, ProtocolVersion, MethodHealth, MethodPing, MethodPorts, MethodExec)
		return resp
	}
	if err != nil {
		resp.Error = fmt.Sprintf("%s: %v", req.Method, err)
		return resp
	}
	raw, err := json.Marshal(result)
	switch {
	case err != nil:
		resp.Error = fmt.Sprintf("%s: encode result: %v", req.Method, err)
	case len(raw) > MaxLine-256:
		resp.Error = fmt.Sprintf("%s: result of %d bytes exceeds the %d-byte line limit", req.Method, len(raw), MaxLine)
	default:
		resp.Result = raw
	}
	return resp
}
