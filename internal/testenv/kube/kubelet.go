package kube

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// logEnd is the line that Cluster.FinishGather appends to a container's log
// file: kubeletProxy ends a log stream there, as the kubelet ends one when
// its container terminates, and leaves it out of every log it serves.
const logEnd = "[testenv: the container terminated; end of log]"

// kubeletProxy is the kubelet endpoint of the node, between kube-apiserver
// and kwok. kwok answers a log request with Follow as if its container never
// stopped; kubeletProxy ends the stream at logEnd. It passes every other
// request, exec included, to kwok.
type kubeletProxy struct {
	ln       net.Listener
	srv      *http.Server
	upstream atomic.Pointer[url.URL] // kwok
	client   *http.Client
	proxy    *httputil.ReverseProxy
	logFile  *os.File
}

// listenKubeletProxy listens on a random loopback port, so that kwok can be
// told the node's port before the proxy knows where kwok is.
func listenKubeletProxy(dir string, pki *kubePKI) (*kubeletProxy, error) {
	cert, err := tls.LoadX509KeyPair(pki.kwokCert, pki.kwokKey)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "kubelet-proxy.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		ln.Close()
		return nil, err
	}
	// A custom TLS configuration keeps the transport on HTTP/1.1, which
	// exec's protocol upgrade needs.
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}}
	p := &kubeletProxy{
		ln:      ln,
		client:  &http.Client{Transport: transport},
		logFile: logFile,
	}
	errorLog := log.New(logFile, "kubelet-proxy ", log.LstdFlags|log.Lmicroseconds)
	p.proxy = &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(p.upstream.Load()) },
		Transport:     transport,
		FlushInterval: -1,
		ErrorLog:      errorLog,
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errorLog,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1 only
	}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }()
	return p, nil
}

func (p *kubeletProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// passTo makes the proxy pass requests to kwok at addr.
func (p *kubeletProxy) passTo(addr string) {
	p.upstream.Store(&url.URL{Scheme: "https", Host: addr})
}

func (p *kubeletProxy) close() {
	_ = p.srv.Close()
	p.client.CloseIdleConnections()
	_ = p.logFile.Close()
}

func (p *kubeletProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/containerLogs/") {
		p.logs(w, r)
		return
	}
	p.proxy.ServeHTTP(w, r)
}

// logs passes a log request to kwok and its answer back line by line,
// without logEnd, where it stops.
func (p *kubeletProxy) logs(w http.ResponseWriter, r *http.Request) {
	u := *p.upstream.Load()
	u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if v := resp.Header.Get("Content-Type"); v != "" {
		w.Header().Set("Content-Type", v)
	}
	if resp.StatusCode != http.StatusOK {
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	// No Content-Length: leaving logEnd out changes the length.
	w.WriteHeader(resp.StatusCode)
	flusher, _ := w.(http.Flusher)
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadBytes('\n')
		if isLogEnd(line) {
			if r.URL.Query().Get("follow") == "true" {
				return
			}
			line = nil
		}
		if len(line) > 0 {
			if _, werr := w.Write(line); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && r.Context().Err() == nil {
				p.proxy.ErrorLog.Printf("read logs %s: %v", r.URL.Path, err)
			}
			return
		}
	}
}

// isLogEnd reports whether a line of a log stream is logEnd, with or
// without a timestamp.
func isLogEnd(line []byte) bool {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.Equal(line, []byte(logEnd)) || bytes.HasSuffix(line, []byte(" "+logEnd))
}
