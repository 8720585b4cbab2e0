package testenv

import (
	"bufio"
	"net"
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
