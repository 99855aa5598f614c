// Package agent is the protocol between bangerd and banger-agent, the
// small static program that runs in every banger guest, and both of its
// ends: the client the daemon uses (Dial, DialVsock, DialFirecrackerVsock)
// and the server the guest runs (Serve), with the guest facts it reports
// (health from /proc, listening sockets from /proc/net). The transport is
// a byte stream: a virtio-serial port behind a QEMU chardev socket, or a
// vsock connection where the VMM offers one. The daemon and banger-agent import
// this package; it pulls in no SQLite, netlink or nftables.
//
// Protocol version 1 is newline-delimited JSON, one request and one
// response per line:
//
//	-> {"v":1,"id":7,"method":"ports"}
//	<- {"v":1,"id":7,"result":{"listeners":[...]}}
//	<- {"v":1,"id":7,"error":"unknown method \"foo\""}
//
// A virtio-serial port is one stream for the VM's whole life, so bytes
// of an abandoned exchange may reach the next client: clients skip lines
// that do not parse or carry another id, and start each request with an
// empty line so a stale partial line cannot swallow it.
package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the banger-agent build version, reported by health.
const Version = "0.1.0"

// ProtocolVersion is the version of the wire protocol this package speaks.
const ProtocolVersion = 1

// MaxLine caps one request or response line, newline excluded.
const MaxLine = 1 << 20

// The methods of protocol version 1.
const (
	MethodHealth = "health"
	MethodPing   = "ping"
	MethodPorts  = "ports"
)

// Request is one request line.
type Request struct {
	V      int             `json:"v"`
	ID     uint64          `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

// Response is one response line: Result or Error is set.
type Response struct {
	V      int             `json:"v"`
	ID     uint64          `json:"id"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Health is the result of "health".
type Health struct {
	Version           string     `json:"version"`  // banger-agent version
	Protocol          int        `json:"protocol"` // ProtocolVersion of the agent
	Hostname          string     `json:"hostname"`
	Kernel            string     `json:"kernel"`         // /proc/sys/kernel/osrelease
	UptimeSeconds     float64    `json:"uptime_seconds"` // /proc/uptime
	LoadAvg           [3]float64 `json:"load_avg"`       // 1, 5, 15 minutes
	MemTotalBytes     int64      `json:"mem_total_bytes"`
	MemAvailableBytes int64      `json:"mem_available_bytes"`
}

// Pong is the result of "ping"; the caller measures the round trip.
type Pong struct{}

// Ports is the result of "ports".
type Ports struct {
	Listeners []Listener `json:"listeners"`
}

// Listener is one listening TCP socket or bound, unconnected UDP socket.
type Listener struct {
	Proto   string `json:"proto"`   // "tcp" or "udp"
	Address string `json:"address"` // "0.0.0.0", "::", "127.0.0.1", ...
	Port    int    `json:"port"`
	PID     int    `json:"pid,omitempty"`     // 0 when no process could be found
	Process string `json:"process,omitempty"` // /proc/PID/comm
}

// errLineTooLong reports a line over MaxLine; the line has been consumed.
var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxLine)

// readLine returns the next line without its newline. A line longer than
// max is read to its end and dropped, and errLineTooLong returned, so the
// stream stays in step. A last line without a newline is returned as a
// line; the read after it reports the reader's error (io.EOF).
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > max+1 { // +1: the newline
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, errLineTooLong
			}
			return bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'}), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			if tooLong {
				return nil, errLineTooLong
			}
			if len(line) > 0 {
				return line, nil
			}
			return nil, err
		}
	}
}
