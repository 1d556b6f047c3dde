// The OpenFaaS of-watchdog "http" mode, reproduced for the benchmark with
// the Go standard library only (the Go module proxy does not serve
// github.com/openfaas/of-watchdog here, so it cannot be built from source).
//
// What it reproduces, from of-watchdog's HTTPFunctionRunner: the watchdog
// starts the function's own HTTP server (fprocess) as a child, pipes its
// stdout/stderr through the watchdog's logger, and forwards every request
// to upstream_url with a fresh http.Request (headers copied, Host kept),
// through an http.Client whose Transport keeps up to 100 idle keep-alive
// connections per host, under a context with exec_timeout; the upstream's
// status, headers and body are copied back, and each call is logged.
// What it leaves out: Prometheus metrics, the max_inflight limiter (off by
// default) and the /_/health lock file.
//
// Environment, as of-watchdog: fprocess, upstream_url, port, exec_timeout.
package main

import (
	"bufio"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"
)

func main() {
	upstream, err := url.Parse(os.Getenv("upstream_url"))
	if err != nil || upstream.Host == "" {
		log.Fatalf("upstream_url: %q is not a URL", os.Getenv("upstream_url"))
	}
	timeout, err := time.ParseDuration(envOr("exec_timeout", "10s"))
	if err != nil {
		log.Fatalf("exec_timeout: %v", err)
	}
	fields := strings.Fields(os.Getenv("fprocess"))
	if len(fields) == 0 {
		log.Fatal("fprocess is required")
	}

	cmd := exec.Command(fields[0], fields[1:]...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		log.Fatalf("start fprocess: %v", err)
	}
	go pipeLog("stdout", stdout)
	go pipeLog("stderr", stderr)
	go func() {
		err := cmd.Wait()
		log.Fatalf("forked function has terminated: %v", err)
	}()

	client := &http.Client{
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{
				Timeout:   timeout,
				KeepAlive: 10 * time.Second,
			}).DialContext,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   100,
			IdleConnTimeout:       120 * time.Second,
			ExpectContinueTimeout: 1500 * time.Millisecond,
		},
		// The watchdog passes redirects back to the caller.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	handler := func(w http.ResponseWriter, r *http.Request) {
		target := *upstream
		target.Path = r.URL.Path
		target.RawQuery = r.URL.RawQuery
		req, err := http.NewRequest(r.Method, target.String(), r.Body)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		copyHeaders(req.Header, r.Header)
		req.Host = r.Host
		req.ContentLength = r.ContentLength
		req.Header.Set("X-Forwarded-For", r.RemoteAddr)

		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		started := time.Now()
		res, err := client.Do(req.WithContext(ctx))
		if err != nil {
			log.Printf("Upstream HTTP request error: %s", err)
			if ctx.Err() == context.DeadlineExceeded {
				w.WriteHeader(http.StatusGatewayTimeout)
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		defer res.Body.Close()
		copyHeaders(w.Header(), res.Header)
		w.WriteHeader(res.StatusCode)
		io.Copy(w, res.Body)
		log.Printf("%s %s - %s - ContentLength: %d (%.4fs)", r.Method, r.RequestURI, res.Status, res.ContentLength, time.Since(started).Seconds())
	}

	server := &http.Server{
		Addr:           "127.0.0.1:" + envOr("port", "8080"),
		ReadTimeout:    timeout,
		WriteTimeout:   timeout,
		MaxHeaderBytes: 1 << 20,
		Handler:        http.HandlerFunc(handler),
	}
	log.Fatal(server.ListenAndServe())
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func copyHeaders(dst, src http.Header) {
	for k, v := range src {
		dst[k] = append([]string(nil), v...)
	}
}

func pipeLog(name string, r io.Reader) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		log.Printf("%s: %s", name, s.Text())
	}
}
