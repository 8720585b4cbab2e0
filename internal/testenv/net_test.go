package testenv

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// An echo server behind the proxy: traffic flows, Cut breaks the open
// connection and refuses new ones, Restore lets them through again.
func TestProxyCutAndRestore(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					_, _ = c.Write([]byte(line))
				}
			}()
		}
	}()
	p := NewProxy(t, ln.Addr().String())
	echo := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && line != "ping\n" {
			t.Fatalf("echo %q", line)
		}
		return err
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Cut()
	if err := echo(c); err == nil {
		t.Fatal("open connection still works after Cut")
	}
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		if echo(c2) == nil {
			t.Fatal("new connection works while cut")
		}
		c2.Close()
	}
	p.Restore()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := echo(c3); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}

// echoServer answers every line with itself; it stops on cleanup.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					_, _ = c.Write([]byte(line))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends one line and times its echo.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader) time.Duration {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
	return time.Since(start)
}

// SetDelay slows an open connection in both directions (a round trip takes
// at least twice the delay), keeps the bytes in order, and 0 makes it fast
// again; a proxy started with StartProxy listens where it was told.
func TestProxyDelay(t *testing.T) {
	target := echoServer(t)
	want := FreeAddr(t)
	p, err := StartProxy(want, target)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Addr() != want {
		t.Fatalf("listening on %s, asked for %s", p.Addr(), want)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if d := roundTrip(t, c, r); d > 150*time.Millisecond {
		t.Fatalf("round trip without delay took %s", d)
	}
	p.SetDelay(150 * time.Millisecond)
	if p.Delay() != 150*time.Millisecond {
		t.Fatalf("Delay() = %s", p.Delay())
	}
	if d := roundTrip(t, c, r); d < 300*time.Millisecond {
		t.Fatalf("round trip with a 150ms delay each way took %s", d)
	}
	// Many lines at once arrive complete and in order.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var sent strings.Builder
	for i := range 200 {
		fmt.Fprintf(&sent, "line %d\n", i)
	}
	if _, err := c.Write([]byte(sent.String())); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		line, err := r.ReadString('\n')
		if err != nil || line != fmt.Sprintf("line %d\n", i) {
			t.Fatalf("line %d: %q, %v", i, line, err)
		}
	}
	p.SetDelay(0)
	if d := roundTrip(t, c, r); d > 150*time.Millisecond {
		t.Fatalf("round trip after SetDelay(0) took %s", d)
	}
	p.Cut()
	if !p.Down() {
		t.Fatal("Down() false after Cut")
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err == nil {
		if _, err := r.ReadString('\n'); err == nil {
			t.Fatal("connection still works after Cut")
		}
	}
}

func TestFreeAddr(t *testing.T) {
	a := FreeAddr(t)
	l, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("FreeAddr %s not listenable: %v", a, err)
	}
	l.Close()
}

func TestLoopbackAddr(t *testing.T) {
	a, err := LoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(a); host != "127.0.0.1" {
		t.Errorf("LoopbackAddr = %s, want a 127.0.0.1 address", a)
	}
	l, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("LoopbackAddr %s not listenable: %v", a, err)
	}
	l.Close()
}
