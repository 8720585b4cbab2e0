// Command demo is a bounded load generator for a local cqrsflow (`make
// demo`): for DEMO_DURATION it sends a realistic mix of commands and queries
// (product edits with the odd stale If-Match → 409, order lifecycles, reads
// that wait for their version, searches) at DEMO_RATE requests/s so the
// dashboards move. It only talks to a loopback API.
package main

import (
	"context"

	"cqrsflow/internal/cli"
	"cqrsflow/internal/config"
)

var program = &cli.Program{
	Name:    "demo",
	Summary: "bounded, realistic load against a local cqrsflow api",
	Commands: []*cli.Command{{Name: "run", Summary: "send load for DEMO_DURATION", Default: true, Setup: func(s *config.Set) cli.Action {
		var c cfg
		c.register(s)
		return cli.Action{Validate: c.validate, Run: func(ctx context.Context, env cli.Env) error { return run(ctx, c, env.Log) }}
	}}},
}

func main() { program.Main() }
