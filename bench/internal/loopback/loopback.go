// Package loopback holds the one rule of where the benchmarks' own
// servers and floors may listen and send: loopback IP addresses only, so
// a benchmark never loads another machine. The hop, the raw relay and
// the parts that start them check their addresses with it, so a part
// refuses at parse time exactly what the binary it starts would refuse.
package loopback

import (
	"fmt"
	"net"
	"net/url"
)

// HostPort checks that hostport is a loopback IP address with a port
// ("127.0.0.1:9200", "[::1]:9200"; not "localhost:9200").
func HostPort(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || port == "" {
		return fmt.Errorf("%q is not host:port", hostport)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback IP address", host)
	}
	return nil
}

// HTTPTarget parses raw as the base URL of an HTTP server to forward to:
// http, a loopback IP with a port, no path (but "/"), query or
// credentials. The URL returned has an empty path.
func HTTPTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("%q: want http://host:port with no path, query or credentials", raw)
	}
	if err := HostPort(u.Host); err != nil {
		return nil, err
	}
	u.Path = ""
	return u, nil
}
