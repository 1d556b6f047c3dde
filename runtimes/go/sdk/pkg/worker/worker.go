// Package worker is the Go language worker of the kubeless-runtime host: it
// connects to the host's Unix socket, reports READY, and answers one framed
// REQUEST at a time by calling the compiled-in handler. The wire format is
// described in docs/runtime-host.md.
package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/kubeless/kubeless/pkg/functions"
)

const (
	kindReady    = 1
	kindRequest  = 3
	kindResponse = 4

	outcomeOK           = 0
	outcomeHandlerError = 1
)

// Handler is the Kubeless Go function signature.
type Handler func(functions.Event, functions.Context) (string, error)

// Run serves the host until the socket closes; it never returns.
func Run(handler Handler) {
	conn, err := net.Dial("unix", os.Getenv("KUBELESS_WORKER_SOCKET"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubeless worker: connect to the host: %v\n", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(conn)
	if err := writeFrame(out, []byte{kindReady}); err != nil {
		os.Exit(1)
	}

	timeout := 180 * time.Second
	if secs, err := strconv.ParseFloat(os.Getenv("FUNC_TIMEOUT"), 64); err == nil && secs > 0 {
		timeout = time.Duration(secs * float64(time.Second))
	}
	fnContext := functions.Context{
		FunctionName: os.Getenv("FUNC_HANDLER"),
		Timeout:      os.Getenv("FUNC_TIMEOUT"),
		Runtime:      os.Getenv("FUNC_RUNTIME"),
		MemoryLimit:  os.Getenv("FUNC_MEMORY_LIMIT"),
	}

	// The socket is read on its own goroutine so the worker exits as soon
	// as the host goes away, even while a handler is still running.
	requests := make(chan []byte)
	go func() {
		in := bufio.NewReader(conn)
		for {
			payload, err := readFrame(in)
			if err != nil {
				os.Exit(0)
			}
			requests <- payload
		}
	}()
	for payload := range requests {
		if len(payload) == 0 || payload[0] != kindRequest {
			fmt.Fprintf(os.Stderr, "kubeless worker: unexpected message\n")
			os.Exit(2)
		}
		id, req, err := decodeRequest(payload)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kubeless worker: %v\n", err)
			os.Exit(2)
		}
		resp := invoke(handler, fnContext, req, timeout)
		if err := writeFrame(out, encodeResponse(id, resp)); err != nil {
			os.Exit(0)
		}
	}
}

type response struct {
	outcome byte
	status  int
	header  http.Header
	body    []byte
}

// recorder is the http.ResponseWriter handed to the function: like Kubeless,
// what it writes comes before the returned string, and WriteHeader sets the
// status code.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func invoke(handler Handler, fnContext functions.Context, req *http.Request, timeout time.Duration) (resp response) {
	// The host answers 408 and kills this worker at FUNC_TIMEOUT; the
	// context ends a little earlier (a tenth of the timeout, at most
	// 250 ms) so a handler watching it can log or clean up first.
	margin := timeout / 10
	if margin > 250*time.Millisecond {
		margin = 250 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout-margin)
	defer cancel()
	req = req.WithContext(ctx)
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	rec := &recorder{header: http.Header{}}
	event := functions.Event{
		Data:           string(body),
		EventID:        req.Header.Get("event-id"),
		EventType:      req.Header.Get("event-type"),
		EventTime:      req.Header.Get("event-time"),
		EventNamespace: req.Header.Get("event-namespace"),
		Extensions: functions.Extension{
			Request:  req,
			Response: rec,
			Context:  ctx,
		},
	}
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(os.Stderr, "Function returned an exception\npanic: %v\n%s", p, debug.Stack())
			resp = response{outcome: outcomeHandlerError, status: 500, header: http.Header{}}
		}
	}()
	result, err := handler(event, fnContext)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Function returned an exception\nError: %v\n", err)
		return response{outcome: outcomeHandlerError, status: 500, header: http.Header{}}
	}
	rec.body.WriteString(result)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	if rec.header.Get("Content-Type") == "" && rec.body.Len() > 0 {
		rec.header.Set("Content-Type", http.DetectContentType(rec.body.Bytes()))
	}
	return response{outcome: outcomeOK, status: status, header: rec.header, body: rec.body.Bytes()}
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	payload := make([]byte, binary.BigEndian.Uint32(head[:]))
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, err
	}
	return payload, nil
}

func writeFrame(w *bufio.Writer, payload []byte) error {
	var head [4]byte
	binary.BigEndian.PutUint32(head[:], uint32(len(payload)))
	if _, err := w.Write(head[:]); err != nil {
		return err
	}
	if _, err := w.Write(payload); err != nil {
		return err
	}
	return w.Flush()
}

type decoder struct {
	buf []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n > len(d.buf) {
		d.err = errors.New("truncated request frame")
		return nil
	}
	out := d.buf[:n]
	d.buf = d.buf[n:]
	return out
}

func (d *decoder) u32() uint32 {
	b := d.take(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (d *decoder) blob() []byte { return d.take(int(d.u32())) }

func decodeRequest(payload []byte) (uint64, *http.Request, error) {
	d := &decoder{buf: payload[1:]}
	idBytes := d.take(8)
	method := string(d.blob())
	path := string(d.blob())
	query := string(d.blob())
	n := int(d.u32())
	header := http.Header{}
	for i := 0; i < n && d.err == nil; i++ {
		name := string(d.blob())
		header.Add(name, string(d.blob()))
	}
	body := d.blob()
	if d.err != nil {
		return 0, nil, d.err
	}
	target := path
	if query != "" {
		target += "?" + query
	}
	req, err := http.NewRequest(method, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("request target %q: %w", target, err)
	}
	req.Header = header
	req.Host = header.Get("Host")
	req.RequestURI = target
	req.ContentLength = int64(len(body))
	return binary.BigEndian.Uint64(idBytes), req, nil
}

func encodeResponse(id uint64, r response) []byte {
	var b bytes.Buffer
	b.WriteByte(kindResponse)
	binary.Write(&b, binary.BigEndian, id)
	b.WriteByte(r.outcome)
	status := r.status
	if status < 0 || status > 65535 {
		status = 500
	}
	binary.Write(&b, binary.BigEndian, uint16(status))
	count := 0
	for _, values := range r.header {
		count += len(values)
	}
	binary.Write(&b, binary.BigEndian, uint32(count))
	blob := func(p []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(p)))
		b.Write(p)
	}
	for name, values := range r.header {
		for _, v := range values {
			blob([]byte(name))
			blob([]byte(v))
		}
	}
	blob(r.body)
	blob(nil)
	return b.Bytes()
}
