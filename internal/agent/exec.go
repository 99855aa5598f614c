package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"banger/internal/errdefs"
)

// MethodExec runs a program in the guest with a stream on its stdin:
//
//	-> {"v":1,"id":8,"method":"exec","params":{"argv":["sh","-c","..."]}}
//	<- {"v":1,"id":8,"result":{"state":"ready"}}
//	-> 65536\n<65536 bytes> ... 0\n          (stdin frames; 0 ends stdin)
//	<- {"v":1,"id":8,"result":{"state":"exited","exit_code":0,"stdout":"..","stderr":".."}}
//
// The client sends frames only after "ready": an agent that does not
// know exec answers its one error line instead, and the client has sent
// nothing it would read as requests. A stream that ends without the
// closing frame (the host went away) closes the program's stdin early.
const MethodExec = "exec"

// MaxFrame caps one stdin frame.
const MaxFrame = 1 << 20

// maxOutput caps the stdout and stderr an exec returns; the rest is cut.
const maxOutput = 64 << 10

// ExecParams are the params of exec.
type ExecParams struct {
	Argv []string `json:"argv"`
}

// ExecResult is the final result of exec.
type ExecResult struct {
	State    string `json:"state"` // "ready", then "exited"
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout,omitempty"`
	Stderr   string `json:"stderr,omitempty"`
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveExec runs one exec request: it answers ready, feeds the frames it
// reads from r to the program's stdin, and answers the exit. A broken
// frame stream is returned as an error after the program was stopped.
func (s *Server) serveExec(ctx context.Context, req Request, r *bufio.Reader, w io.Writer) error {
	resp := Response{V: ProtocolVersion, ID: req.ID}
	var p ExecParams
	if err := json.Unmarshal(req.Params, &p); err != nil || len(p.Argv) == 0 {
		resp.Error = "exec: params need a non-empty argv"
		return writeResponse(w, resp)
	}
	cmd := exec.CommandContext(ctx, p.Argv[0], p.Argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdout, stderr := &limitedBuffer{max: maxOutput}, &limitedBuffer{max: maxOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	stdin, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		resp.Error = fmt.Sprintf("exec %s: %v", p.Argv[0], err)
		return writeResponse(w, resp)
	}
	s.logger().Info("exec", "argv0", p.Argv[0])
	resp.Result, _ = json.Marshal(ExecResult{State: "ready"})
	if err := writeResponse(w, resp); err != nil {
		stdin.Close()
		cmd.Wait()
		return err
	}
	feedErr := copyFrames(stdin, r)
	stdin.Close()
	waitErr := cmd.Wait()
	res := ExecResult{State: "exited", Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	default:
		res.ExitCode = -1
		res.Stderr += waitErr.Error()
	}
	if feedErr != nil {
		return fmt.Errorf("exec stdin: %w", feedErr)
	}
	resp.Result, _ = json.Marshal(res)
	return writeResponse(w, resp)
}

// copyFrames copies stdin frames from r to dst until the closing frame.
// A program that stops reading early does not stall the stream: the
// rest of the frames are read and dropped.
func copyFrames(dst io.Writer, r *bufio.Reader) error {
	broken := false
	for {
		line, err := readLine(r, 32)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(string(line))
		if err != nil || n < 0 || n > MaxFrame {
			return fmt.Errorf("bad frame header %q", line)
		}
		if n == 0 {
			return nil
		}
		if broken {
			if _, err := r.Discard(n); err != nil {
				return err
			}
			continue
		}
		frame := &io.LimitedReader{R: r, N: int64(n)}
		if _, err := io.Copy(dst, frame); err != nil {
			// The program closed its stdin: drop what is left of this
			// frame and the next ones.
			broken = true
			if _, err := io.Copy(io.Discard, frame); err != nil {
				return err
			}
		}
		if frame.N > 0 {
			return io.ErrUnexpectedEOF
		}
	}
}

func writeResponse(w io.Writer, resp Response) error {
	out, err := json.Marshal(resp)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	if _, err := w.Write(append(out, '\n')); err != nil {
		return fmt.Errorf("write response: %w", err)
	}
	return nil
}

// Exec runs argv in the guest with stdin streamed to it, and returns its
// exit status and output (each cut at 64 KiB). ready, if set, is called
// once the agent started the program, before stdin is read: until then
// nothing is consumed, so a caller can fall back to another way when
// Exec fails before ready. The call waits until ctx ends (no default
// timeout): the agent must answer ready within DefaultTimeout.
func (c *Client) Exec(ctx context.Context, argv []string, stdin io.Reader, ready func()) (ExecResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	if err := c.conn.SetDeadline(callDeadline(ctx, start)); err != nil {
		return ExecResult{}, fmt.Errorf("agent exec: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	params, err := json.Marshal(ExecParams{Argv: argv})
	if err != nil {
		return ExecResult{}, fmt.Errorf("agent exec: %w", err)
	}
	c.nextID++
	id := c.nextID
	req, err := json.Marshal(Request{V: ProtocolVersion, ID: id, Method: MethodExec, Params: params})
	if err != nil {
		return ExecResult{}, fmt.Errorf("agent exec: %w", err)
	}
	if _, err := c.conn.Write(append(append([]byte{'\n'}, req...), '\n')); err != nil {
		return ExecResult{}, fmt.Errorf("agent exec: send: %w", deadlineError(ctx, err, time.Since(start)))
	}
	res, err := c.readExec(ctx, id, start)
	if err != nil {
		return res, err
	}
	if res.State != "ready" {
		return res, fmt.Errorf("agent exec: got state %q, want ready", res.State)
	}
	// From here the stream may take as long as ctx allows.
	deadline, _ := ctx.Deadline()
	c.conn.SetDeadline(deadline)
	if ready != nil {
		ready()
	}
	if err := writeFrames(c.conn, stdin); err != nil {
		return ExecResult{}, fmt.Errorf("agent exec: stdin: %w", deadlineError(ctx, err, time.Since(start)))
	}
	return c.readExec(ctx, id, start)
}

// writeFrames sends src as stdin frames, each as soon as it was read,
// and the closing frame. An error reading src is returned without the
// closing frame, so the program sees its stdin end early only if the
// connection goes too.
func writeFrames(w io.Writer, src io.Reader) error {
	const header = 16
	buf := make([]byte, header+256<<10)
	for {
		n, rerr := src.Read(buf[header:])
		if n > 0 {
			h := strconv.Itoa(n) + "\n"
			start := header - len(h)
			copy(buf[start:], h)
			if _, err := w.Write(buf[start : header+n]); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	_, err := io.WriteString(w, "0\n")
	return err
}

// readExec reads the next response to id as an ExecResult.
func (c *Client) readExec(ctx context.Context, id uint64, start time.Time) (ExecResult, error) {
	for {
		line, err := readLine(c.r, MaxLine)
		switch {
		case errors.Is(err, errLineTooLong):
			return ExecResult{}, fmt.Errorf("agent exec: response %w", err)
		case errors.Is(err, io.EOF):
			return ExecResult{}, errdefs.WithKind(errdefs.ErrUnavailable, errors.New("agent exec: the connection closed before an answer"))
		case err != nil:
			return ExecResult{}, fmt.Errorf("agent exec: %w", deadlineError(ctx, err, time.Since(start)))
		}
		var resp Response
		if json.Unmarshal(line, &resp) != nil || resp.ID != id {
			continue
		}
		if resp.Error != "" {
			return ExecResult{}, &RemoteError{Method: MethodExec, Message: resp.Error}
		}
		var res ExecResult
		if err := json.Unmarshal(resp.Result, &res); err != nil {
			return ExecResult{}, fmt.Errorf("agent exec: decode result: %w", err)
		}
		return res, nil
	}
}
