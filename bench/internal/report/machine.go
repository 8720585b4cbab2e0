package report

// The machine and the versions of the running services, for the report.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// machineInfo describes where the numbers were measured.
type machineInfo struct {
	CPUModel      string `json:"cpu_model"`
	Cores         int    `json:"cores"`
	MemTotal      string `json:"mem_total"`
	Kernel        string `json:"kernel"`
	Go            string `json:"go"`
	PostgreSQL    string `json:"postgresql"`
	Kafka         string `json:"kafka"`
	Elasticsearch string `json:"elasticsearch"`
}

// stackEndpoints are where the report finds the services.
type stackEndpoints struct {
	PostgresURL      string
	ElasticsearchURL string
	StateDir         string // local stack state dir (kafka.pid)
}

// gatherMachine reads /proc and asks each service for its version. A
// service that does not answer gets "unknown (<why>)"; it does not fail
// the report.
func gatherMachine(ctx context.Context, ep stackEndpoints) machineInfo {
	m := machineInfo{
		Cores:  runtime.NumCPU(),
		Go:     runtime.Version(),
		Kernel: strings.TrimSpace(readFileOr("/proc/sys/kernel/osrelease", "unknown")),
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(f)
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		if kb, ok := memTotalKB(f); ok {
			m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
		f.Close()
	}
	m.PostgreSQL = orUnknown(postgresVersion(ctx, ep.PostgresURL))
	m.Elasticsearch = orUnknown(elasticsearchVersion(ctx, ep.ElasticsearchURL))
	m.Kafka = orUnknown(kafkaVersion(ep.StateDir))
	return m
}

func orUnknown(v string, err error) string {
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return v
}

func readFileOr(path, def string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	return string(b)
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// memTotalKB returns MemTotal of /proc/meminfo in kB.
func memTotalKB(r io.Reader) (int64, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

func postgresVersion(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "", fmt.Errorf("SHOW server_version: %w", err)
	}
	return v, nil
}

func elasticsearchVersion(ctx context.Context, base string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		strings.TrimRight(base, "/")+"/_nodes/_local?filter_path=nodes.*.version", nil)
	if err != nil {
		return "", err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET _nodes/_local: %s", res.Status)
	}
	return parseESNodesVersion(res.Body)
}

// parseESNodesVersion reads {"nodes":{"<id>":{"version":"8.15.5"}}}.
func parseESNodesVersion(r io.Reader) (string, error) {
	var body struct {
		Nodes map[string]struct {
			Version string `json:"version"`
		} `json:"nodes"`
	}
	if err := json.NewDecoder(r).Decode(&body); err != nil {
		return "", fmt.Errorf("decoding _nodes: %w", err)
	}
	for _, n := range body.Nodes {
		if n.Version != "" {
			return n.Version, nil
		}
	}
	return "", fmt.Errorf("no node version in _nodes")
}

// kafkaJar matches the broker jar on the running broker's class path.
var kafkaJar = regexp.MustCompile(`kafka_[0-9.]+-([0-9]+\.[0-9]+\.[0-9]+[^/:]*?)\.jar`)

// kafkaVersion reads the version of the running broker from the broker jar
// on its command line (the Kafka protocol does not carry the broker's
// software version). The pid comes from the local stack's kafka.pid.
func kafkaVersion(stateDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, "kafka", "kafka.pid"))
	if err != nil {
		return "", fmt.Errorf("reading kafka.pid: %w", err)
	}
	pid := strings.TrimSpace(string(b))
	cmd, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
	if err != nil {
		return "", fmt.Errorf("broker pid %s not running: %w", pid, err)
	}
	return kafkaVersionFromCmdline(cmd)
}

// kafkaVersionFromCmdline finds the broker jar kafka_<scala>-<version>.jar
// on the class path of a NUL-separated command line; class path entries
// ending in "/*" are expanded by listing the directory.
func kafkaVersionFromCmdline(cmd []byte) (string, error) {
	args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
	for i, a := range args {
		if (a != "-cp" && a != "-classpath" && a != "--class-path") || i+1 >= len(args) {
			continue
		}
		for _, entry := range filepath.SplitList(args[i+1]) {
			names := []string{entry}
			if strings.HasSuffix(entry, "/*") {
				names, _ = filepath.Glob(strings.TrimSuffix(entry, "*") + "kafka_*.jar")
			}
			for _, n := range names {
				if m := kafkaJar.FindStringSubmatch(filepath.Base(n)); m != nil {
					return m[1], nil
				}
			}
		}
	}
	return "", fmt.Errorf("no kafka_<scala>-<version>.jar on the broker's class path")
}
