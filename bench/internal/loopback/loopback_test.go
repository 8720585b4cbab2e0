package loopback

import "testing"

func TestHostPort(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:1", "127.8.9.10:9200", "[::1]:9200"} {
		if err := HostPort(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "127.0.0.1", "127.0.0.1:", ":9200", "0.0.0.0:1", "localhost:1", "10.0.0.1:1", "[::]:1", "example.com:80", "127.0.0.1:1:2"} {
		if err := HostPort(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestHTTPTarget(t *testing.T) {
	for raw, want := range map[string]string{"http://127.0.0.1:9200": "http://127.0.0.1:9200", "http://127.0.0.1:9200/": "http://127.0.0.1:9200", "http://[::1]:1": "http://[::1]:1"} {
		u, err := HTTPTarget(raw)
		if err != nil || u.String() != want {
			t.Errorf("%q: %v, %v; want %s", raw, u, err, want)
		}
	}
	for _, bad := range []string{"", "::not a url", "https://127.0.0.1:9200", "http://127.0.0.1", "http://localhost:9200", "http://10.0.0.1:9200",
		"http://127.0.0.1:9200/prefix", "http://127.0.0.1:9200?x=1", "http://u:p@127.0.0.1:9200", "127.0.0.1:9200"} {
		if u, err := HTTPTarget(bad); err == nil {
			t.Errorf("%q accepted as %v", bad, u)
		}
	}
}
