// Command server is the child process of the binary package's tests: it
// serves /readyz on ADDR once READY_AFTER has passed, exits with status 3
// after EXIT_AFTER, and ignores SIGTERM when IGNORE_TERM=1.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	fmt.Println("server starting")
	start := time.Now()
	readyAfter, _ := time.ParseDuration(os.Getenv("READY_AFTER"))
	if d, err := time.ParseDuration(os.Getenv("EXIT_AFTER")); err == nil {
		time.AfterFunc(d, func() { fmt.Println("giving up"); os.Exit(3) })
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		for range term {
			if os.Getenv("IGNORE_TERM") != "1" {
				fmt.Println("terminated")
				os.Exit(0)
			}
		}
	}()
	http.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if time.Since(start) < readyAfter {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if err := http.ListenAndServe(os.Getenv("ADDR"), nil); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
