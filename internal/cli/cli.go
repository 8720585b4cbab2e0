// Package cli is the one skeleton of the cqrsflow binaries: main calls
// Program.Main, which picks the subcommand, parses its settings (env vars
// with flags of the same meaning, see internal/config), validates them all
// at once, logs one start-up line with the configuration (secrets masked)
// and runs the command with a context cancelled by SIGINT/SIGTERM.
//
// Command lines are strict: an unknown subcommand, a leftover argument, a
// bad flag or an invalid setting is a usage error (exit 2) that names the
// problem; -h/--help prints usage and exits 0; --version prints the build
// version. A command that fails at run time exits 1.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"cqrsflow/internal/config"
	"cqrsflow/internal/obs"
)

// Exit statuses.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Program is one binary: its name and its commands.
type Program struct {
	Name     string
	Summary  string // one line, shown at the top of the usage
	Commands []*Command
}

// Command is a subcommand. A command either has subcommands of its own
// (`projector dlq list`) or a Setup that registers its settings and returns
// what to run.
type Command struct {
	Name    string
	Summary string
	// Default marks the command that runs when no command is named
	// (`projector` = `projector run`). At most one per level.
	Default bool
	// Args describes the positional arguments for the usage line; with
	// MinArgs = MaxArgs = 0 (the default) none are accepted.
	Args             string
	MinArgs, MaxArgs int
	Setup            func(s *config.Set) Action
	Commands         []*Command
}

// Action is what a command runs once its settings parsed.
type Action struct {
	// Validate returns every problem of the settings at once
	// (errors.Join); any problem is a usage error.
	Validate func() error
	// Run does the work; ctx ends on SIGINT or SIGTERM.
	Run func(ctx context.Context, env Env) error
	// Quiet skips the start-up log line (commands whose output is a
	// report on stdout).
	Quiet bool
}

// Env is what a running command gets from the skeleton.
type Env struct {
	Log    *slog.Logger
	Stdout io.Writer
	Stderr io.Writer
	Args   []string
	// Settings are the command's settings as log attributes, masked.
	Settings []any
}

// usageError is a command-line problem: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// UsageError makes err, returned by a command's Run, a usage error (exit
// 2, as for a bad flag): for what the command line asked that proves
// wrong only at run time, such as an id that names nothing.
func UsageError(err error) error { return &usageError{msg: err.Error()} }

// Main runs the program on os.Args and exits with its status.
func (p *Program) Main() {
	os.Exit(p.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// Run runs the program on args and returns the exit status.
func (p *Program) Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	code, err := p.run(ctx, args, stdout, stderr)
	if err != nil {
		// A failed run's error may quote a connection string (url.Parse
		// errors quote the URL whole): masked like the settings.
		fmt.Fprintf(stderr, "%s: %s\n", p.Name, config.MaskURL(err.Error()))
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "Run '%s -h' for usage.\n", p.Name)
		}
	}
	return code
}

func (p *Program) run(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	path := []string{p.Name}
	cmds := p.Commands
	summary := p.Summary
	for {
		if len(args) > 0 {
			switch args[0] {
			case "-h", "-help", "--help", "help":
				p.usage(stdout, path, summary, cmds)
				return ExitOK, nil
			case "-version", "--version", "version":
				fmt.Fprintf(stdout, "%s %s\n", p.Name, obs.Version)
				return ExitOK, nil
			}
		}
		var cmd *Command
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			cmd = find(cmds, args[0])
			if cmd == nil {
				return ExitUsage, &usageError{fmt.Sprintf("unknown command %q (commands: %s)", strings.Join(append(path[1:], args[0]), " "), names(cmds))}
			}
			args = args[1:]
		} else if cmd = defaultOf(cmds); cmd == nil {
			return ExitUsage, &usageError{fmt.Sprintf("%s: name a command (%s)", strings.Join(path, " "), names(cmds))}
		}
		path = append(path, cmd.Name)
		if len(cmd.Commands) == 0 {
			return p.exec(ctx, cmd, path, args, stdout, stderr)
		}
		cmds, summary = cmd.Commands, cmd.Summary
	}
}

func (p *Program) exec(ctx context.Context, cmd *Command, path, args []string, stdout, stderr io.Writer) (int, error) {
	name := strings.Join(path, " ")
	s := config.NewSet(name)
	var logLevel string
	s.String(&logLevel, "LOG_LEVEL", "info", "log level: debug, info, warn or error")
	act := cmd.Setup(s)
	fs := s.FlagSet()
	var version bool
	if fs.Lookup("version") == nil { // `projector rebuild --version N` means an index version
		fs.BoolVar(&version, "version", false, "print the build version and exit")
	}
	fs.SetOutput(io.Discard)
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			commandUsage(stdout, name, cmd, fs)
			return ExitOK, nil
		}
		return ExitUsage, &usageError{fmt.Sprintf("%s: %v", name, err)}
	}
	if version {
		fmt.Fprintf(stdout, "%s %s\n", p.Name, obs.Version)
		return ExitOK, nil
	}
	rest := s.Args()
	var problems []error
	switch {
	case cmd.MaxArgs == 0 && len(rest) > 0:
		problems = append(problems, fmt.Errorf("unexpected arguments: %q", rest))
	case len(rest) < cmd.MinArgs || (cmd.MaxArgs >= 0 && len(rest) > cmd.MaxArgs):
		problems = append(problems, fmt.Errorf("wrong number of arguments %q: want %s", rest, cmd.Args))
	}
	if err := s.Err(); err != nil {
		problems = append(problems, err)
	}
	if !validLevel(logLevel) {
		problems = append(problems, fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", logLevel))
	}
	if act.Validate != nil {
		if err := act.Validate(); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return ExitUsage, &usageError{fmt.Sprintf("%s: invalid configuration:\n%s", name, indent(errors.Join(problems...)))}
	}

	log := obs.NewLogger(stderr, logLevel).With("service", p.Name)
	env := Env{Log: log, Stdout: stdout, Stderr: stderr, Args: rest, Settings: s.LogAttrs()}
	if !act.Quiet {
		log.Info("starting", append([]any{"command", strings.Join(path[1:], " "), "version", obs.Version}, env.Settings...)...)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := act.Run(ctx, env); err != nil {
		if _, ok := errors.AsType[*usageError](err); ok {
			return ExitUsage, err
		}
		return ExitFailure, err
	}
	return ExitOK, nil
}

func validLevel(l string) bool {
	switch strings.ToLower(l) {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

func indent(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = "  - " + l
	}
	return strings.Join(lines, "\n")
}

func find(cmds []*Command, name string) *Command {
	for _, c := range cmds {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func defaultOf(cmds []*Command) *Command {
	for _, c := range cmds {
		if c.Default {
			return c
		}
	}
	return nil
}

func names(cmds []*Command) string {
	n := make([]string, len(cmds))
	for i, c := range cmds {
		n[i] = c.Name
	}
	return strings.Join(n, ", ")
}

func (p *Program) usage(w io.Writer, path []string, summary string, cmds []*Command) {
	name := strings.Join(path, " ")
	if summary != "" {
		fmt.Fprintf(w, "%s: %s\n\n", name, summary)
	}
	fmt.Fprintf(w, "Usage: %s <command> [flags]\n\nCommands:\n", name)
	for _, c := range cmds {
		def := ""
		if c.Default {
			def = " (default)"
		}
		fmt.Fprintf(w, "  %-10s %s%s\n", c.Name, c.Summary, def)
	}
	fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags; every setting is also read from the env var named in its help.\n", name)
	fmt.Fprintf(w, "'%s --version' prints the build version.\n", p.Name)
}

func commandUsage(w io.Writer, name string, cmd *Command, fs *flag.FlagSet) {
	if cmd.Summary != "" {
		fmt.Fprintf(w, "%s: %s\n\n", name, cmd.Summary)
	}
	args := ""
	if cmd.Args != "" {
		args = " " + cmd.Args
	}
	fmt.Fprintf(w, "Usage: %s [flags]%s\n\nFlags:\n", name, args)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
