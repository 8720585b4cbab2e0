package main

import (
	"context"
	"strings"
	"testing"
)

// The command line is strict: an unknown part or a bad flag is a usage
// error (2), -h is not an error (0). None of these touch the stack.
func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{nil, 2, "usage: bench <part>"},
		{[]string{"nosuch"}, 2, "parts: [pipeline projector read relay report write]"},
		{[]string{"-h"}, 0, "usage: bench <part>"},
		{[]string{"write", "-h"}, 0, ""},
		{[]string{"write", "-no-such-flag"}, 2, "bench write:"},
		{[]string{"relay", "-rows", "0"}, 2, "-rows"},
		{[]string{"projector", "-events", "1", "-products", "2"}, 2, "events >= products"},
		{[]string{"pipeline", "-rates", "x"}, 2, "-rates"},
		{[]string{"read", "-routes", "search,nosuch"}, 2, "-routes"},
		{[]string{"report", "leftover"}, 2, "unexpected arguments"},
	} {
		var stderr strings.Builder
		if code := run(context.Background(), tc.args, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.says) {
			t.Errorf("bench %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr.String(), tc.code, tc.says)
		}
	}
}
