package main

import (
	"fmt"
	"io"
	"net"
	"time"
)

// probes are the smallest requests each service answers at once: the
// PostgreSQL SSLRequest ('N' or 'S'), a Kafka ApiVersions v0 request, an
// HTTP GET / of Elasticsearch.
var probes = map[string][]byte{
	"postgres":      {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f},
	"kafka":         {0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff},
	"elasticsearch": []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
}

// probe sends the service's probe to addr and returns the time until the
// first byte of the answer. A cut link answers nothing (the proxy closes
// the connection): an error.
func probe(addr, service string, timeout time.Duration) (time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	start := time.Now()
	if _, err := c.Write(probes[service]); err != nil {
		return 0, err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, fmt.Errorf("no answer: %w", err)
	}
	return time.Since(start), nil
}

// refused reports whether nothing answers on addr (a stopped service).
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}
