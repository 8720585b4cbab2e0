// Command hop is the floor the benchmarks measure the api against: the
// thinnest HTTP service Go's net/http makes. It parses nothing, checks
// nothing, logs nothing and keeps no metrics, so the CPU it uses per
// request is what any service written with net/http pays on this machine
// for the HTTP exchanges alone.
//
//	hop -addr 127.0.0.1:PORT -target http://127.0.0.1:9200
//	hop -addr 127.0.0.1:PORT -answer
//
// With -target (`bench read`) it sends every request on with the same
// method, path, query and body, through one shared net/http client (idle
// connections kept, no gzip, as the api's Elasticsearch client), and
// copies the answer's status, Content-Type and body back unread: one
// HTTP exchange on each side, as the api's reads have. With -answer
// (`bench write`) it reads each request's body and answers itself — 201
// to a POST, 200 to anything else, with a small JSON body — as the api
// answers a write, without the database.
//
// GET /readyz answers 200 (for the harness's readiness wait). Addresses
// must be loopback: the benchmarks never send load elsewhere. Exit
// status: 0 after SIGTERM, 1 the server failed, 2 a bad command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/loopback"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	return cli.Command("hop", args, stderr, parse, serve)
}

type config struct {
	addr   string
	target *url.URL // nil: answer
}

// parse reads the flags; a leftover argument, a missing -addr, neither or
// both of -target and -answer, or a target that is not a loopback http
// URL is an error.
func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("hop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "listen address, host:port on loopback")
	target := fs.String("target", "", "forward every request to this URL, http://127.0.0.1:PORT")
	answer := fs.Bool("answer", false, "answer every request itself (201 to POST, 200 otherwise)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *addr == "" {
		return config{}, errors.New("-addr is required")
	}
	if err := loopback.HostPort(*addr); err != nil {
		return config{}, fmt.Errorf("-addr: %w", err)
	}
	if (*target == "") == !*answer {
		return config{}, errors.New("give exactly one of -target and -answer")
	}
	if *answer {
		return config{addr: *addr}, nil
	}
	u, err := loopback.HTTPTarget(*target)
	if err != nil {
		return config{}, fmt.Errorf("-target: %w", err)
	}
	return config{addr: *addr, target: u}, nil
}

// forwarder sends each request on to target and copies the answer back.
type forwarder struct {
	target *url.URL
	client *http.Client
	bufs   sync.Pool
}

func newForwarder(target *url.URL) *forwarder {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost, t.DisableCompression = 256, 256, true
	return &forwarder{target: target, client: &http.Client{Transport: t, Timeout: 10 * time.Second},
		bufs: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/readyz" {
		w.WriteHeader(http.StatusOK)
		return
	}
	u := *f.target
	u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	var body io.Reader
	if r.ContentLength != 0 {
		body = r.Body
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req.ContentLength = r.ContentLength
	if ct := r.Header.Get("Content-Type"); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	res, err := f.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	if res.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(res.ContentLength, 10))
	}
	w.WriteHeader(res.StatusCode)
	bp := f.bufs.Get().(*[]byte)
	_, _ = io.CopyBuffer(w, res.Body, *bp)
	f.bufs.Put(bp)
}

// answerer answers every request itself, after reading its body.
type answerer struct{ bufs sync.Pool }

// answerBody is about what the api answers to a write.
var answerBody = []byte(`{"id":"01937a3c-0000-7000-8000-000000000000","version":1}`)

func (a *answerer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bp := a.bufs.Get().(*[]byte)
	_, err := io.CopyBuffer(io.Discard, io.LimitReader(r.Body, 1<<20), *bp)
	a.bufs.Put(bp)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		status = http.StatusCreated
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(answerBody)))
	w.WriteHeader(status)
	_, _ = w.Write(answerBody)
}

func handler(cfg config) http.Handler {
	if cfg.target == nil {
		return &answerer{bufs: sync.Pool{New: func() any { b := make([]byte, 4<<10); return &b }}}
	}
	return newForwarder(cfg.target)
}

func serve(ctx context.Context, cfg config) error {
	srv := &http.Server{Addr: cfg.addr, Handler: handler(cfg), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
