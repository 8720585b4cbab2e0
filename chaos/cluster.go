package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"cqrsflow/internal/testenv"
)

// The components and the services each one talks to. relay-2 and
// projector-3 only run while the nemesis has them join.
var (
	baseComponents  = []string{"relay-1", "projector-1", "projector-2", "api"}
	kafkaComponents = []string{"relay-1", "relay-2", "projector-1", "projector-2", "projector-3"}
	allComponents   = []string{"api", "relay-1", "relay-2", "projector-1", "projector-2", "projector-3"}
	servicesOf      = map[string][]string{
		"api": {"postgres", "elasticsearch"}, "relay-1": {"postgres", "kafka"}, "relay-2": {"postgres", "kafka"},
		"projector-1": {"kafka", "elasticsearch"}, "projector-2": {"kafka", "elasticsearch"}, "projector-3": {"kafka", "elasticsearch"},
	}
)

func linkName(component, service string) string { return component + "->" + service }

// allLinks lists every component→service link in a fixed order (their
// proxies' ports follow it).
func allLinks() []string {
	var out []string
	for _, c := range allComponents {
		for _, s := range servicesOf[c] {
			out = append(out, linkName(c, s))
		}
	}
	return out
}

// harness is what lives across the runs of one invocation: the stack, the
// binaries built once, and the proxies (Kafka advertises them, so they
// stay put while the broker runs).
type harness struct {
	cfg     config
	stk     *stack
	binDir  string
	proxies map[string]*testenv.Proxy
	log     *slog.Logger
}

func (h *harness) proxyPort(link string) int {
	for i, l := range allLinks() {
		if l == link {
			return h.stk.port(offProxies + i)
		}
	}
	panic("unknown link " + link)
}

// startProxies starts one proxy per link: PostgreSQL and Elasticsearch
// links forward to the service's port, each Kafka link to the broker
// listener of its component.
func (h *harness) startProxies() error {
	h.proxies = map[string]*testenv.Proxy{}
	for _, l := range allLinks() {
		comp, svc, _ := strings.Cut(l, "->")
		var target string
		switch svc {
		case "postgres":
			target = h.stk.addr(offPostgres)
		case "elasticsearch":
			target = h.stk.addr(offES)
		case "kafka":
			target = h.stk.addr(offListeners + indexOf(kafkaComponents, comp))
		}
		p, err := testenv.StartProxy(net.JoinHostPort("127.0.0.1", strconv.Itoa(h.proxyPort(l))), target)
		if err != nil {
			return fmt.Errorf("proxy for %s: %w", l, err)
		}
		h.proxies[l] = p
	}
	return nil
}

func (h *harness) closeProxies() {
	for _, p := range h.proxies {
		p.Close()
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	panic(s + " not in list")
}

// build compiles the three binaries from the tree.
func (h *harness) build(ctx context.Context) error {
	args := []string{"build", "-o", h.binDir + string(filepath.Separator)}
	if h.cfg.Race {
		args = append(args, "-race")
	}
	args = append(args, "./api", "./outbox-relay", "./projector")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = h.cfg.Repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s (run from the repository root): %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pipeline is one run's pipeline: fresh names in the chaos stack and the
// binaries started against them through the proxies.
type pipeline struct {
	h           *harness
	runID       string
	schema      string
	topicPrefix string
	indexPrefix string
	groupPrefix string
	apiKey      string
	outDir      string
	pgURL       string // direct, with search_path
	bins        map[string]*binary
	log         *slog.Logger
	stopWatch   context.CancelFunc // ends the hang watchdog before the binaries are stopped
}

func (h *harness) newPipeline(seed uint64) (*pipeline, error) {
	id := randomHex(3)
	p := &pipeline{h: h, log: h.log, stopWatch: func() {}, runID: id, schema: "chaos_" + id, topicPrefix: "chaos-" + id, indexPrefix: "chaos-" + id + "-",
		groupPrefix: "chaos-" + id + "-projector", apiKey: randomHex(20), bins: map[string]*binary{}}
	p.outDir = filepath.Join(h.cfg.OutDir, fmt.Sprintf("%s-seed%d-%s", time.Now().Format("20060102-150405"), seed, id))
	if err := os.MkdirAll(filepath.Join(p.outDir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", p.outDir, err)
	}
	u, err := url.Parse(h.stk.PostgresURL(h.stk.port(offPostgres)))
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("search_path", p.schema)
	u.RawQuery = q.Encode()
	p.pgURL = u.String()
	for _, c := range allComponents {
		p.bins[c] = p.newBinary(c)
	}
	return p, nil
}

func (p *pipeline) topic(aggregate string) string { return p.topicPrefix + "." + aggregate + ".events" }

func (p *pipeline) group(projection string) string { return p.groupPrefix + "-" + projection }

// newBinary wires a component to its proxies. The environment is built
// from scratch: nothing from the caller's (a POSTGRES_URL of the shared
// stack, say) can leak in.
func (p *pipeline) newBinary(c string) *binary {
	h := p.h
	// runURL is a PostgreSQL URL of the stack on the run's schema.
	runURL := func(raw string) string {
		u, _ := url.Parse(raw)
		q := u.Query()
		q.Set("search_path", p.schema)
		q.Set("application_name", "chaos-"+c)
		u.RawQuery = q.Encode()
		return u.String()
	}
	pgURL := func() string { return runURL(h.stk.PostgresURL(h.proxyPort(linkName(c, "postgres")))) }
	kafka := func() string { return "127.0.0.1:" + strconv.Itoa(h.proxyPort(linkName(c, "kafka"))) }
	es := func() string { return "http://127.0.0.1:" + strconv.Itoa(h.proxyPort(linkName(c, "elasticsearch"))) }
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(h.stk.port(offHTTP+indexOf(allComponents, c))))
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "CQRSFLOW_STATE_DIR=" + h.stk.dir, "LOG_LEVEL=info",
		"GORACE=halt_on_error=0"}
	var bin string
	switch {
	case c == "api":
		bin = "api"
		env = append(env, "POSTGRES_URL="+pgURL(), "HTTP_ADDR="+addr, "API_KEYS=chaos:"+p.apiKey, "ELASTICSEARCH_URL="+es(),
			"INDEX_PREFIX="+p.indexPrefix, "MIGRATE_ON_START=false", "RATE_LIMIT_RPS=0")
	case strings.HasPrefix(c, "relay"):
		bin = "outbox-relay"
		env = append(env, "POSTGRES_URL="+pgURL(), "KAFKA_BROKERS="+kafka(), "TOPIC_PREFIX="+p.topicPrefix, "METRICS_ADDR="+addr,
			"RELAY_ID=chaos-"+c, "MIGRATE=false", "TOPIC_PARTITIONS="+strconv.Itoa(partitions), "LEASE_TTL=4s",
			"DELIVERY_TIMEOUT=10s", "RESCAN_INTERVAL=10s", "POISON_ATTEMPTS="+strconv.Itoa(relayPoisonAttempts), "POISON_INTERVAL=1s")
	default:
		bin = "projector"
		// The event store of the run for the projector's continuous
		// verification, straight to the chaos PostgreSQL (not a link the
		// nemesis cuts: it only pauses verification). Without it the
		// projector took the default URL, the shared stack's database,
		// and reported every document of the run as drift.
		env = append(env, "POSTGRES_URL="+runURL(h.stk.PostgresURL(h.stk.port(offPostgres))), "KAFKA_BROKERS="+kafka(), "ELASTICSEARCH_URL="+es(), "TOPIC_PREFIX="+p.topicPrefix,
			"GROUP_PREFIX="+p.groupPrefix, "INDEX_PREFIX="+p.indexPrefix, "METRICS_ADDR="+addr, "LAG_INTERVAL=1s", "SESSION_TIMEOUT=6s")
	}
	return &binary{name: c, path: filepath.Join(h.binDir, bin), env: env, addr: addr,
		logPath: filepath.Join(p.outDir, "logs", c+".log"), log: h.log}
}

// relayPoisonAttempts is the relays' POISON_ATTEMPTS (the default, set
// explicitly): the checker expects each dead letter refused that often.
const relayPoisonAttempts = 3

// partitions of the run's event topics.
const partitions = 6

// start brings the pipeline up: every proxy open and fast, the relay, the
// two projectors and the api, each ready.
func (p *pipeline) start(ctx context.Context) error {
	for _, px := range p.h.proxies {
		px.Restore()
		px.SetDelay(0)
	}
	for _, c := range baseComponents {
		b := p.bins[c]
		if err := b.start(); err != nil {
			return err
		}
		if err := b.waitHTTP(ctx, "/readyz", 2*time.Minute); err != nil {
			return err
		}
		p.h.log.Info("started", "process", c, "pid", b.pid(), "addr", b.addr)
	}
	return nil
}

// stop retires every binary: the api first (no new writes), SIGTERM with
// a grace, so the checker sees how each one ended.
func (p *pipeline) stop() error {
	var errs []error
	for _, c := range []string{"api", "relay-1", "relay-2", "projector-1", "projector-2", "projector-3"} {
		if err := p.bins[c].retire(termGrace); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *pipeline) apiURL() string { return "http://" + p.bins["api"].addr }
