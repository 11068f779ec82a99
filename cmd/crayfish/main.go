package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/crayfish-backup/crayfish/node"

	"github.com/spf13/cobra"

	"github.com/crayfish-backup/crayfish/node/client"
	"github.com/crayfish-backup/crayfish/transport"
)

// version is the build's version; agent and client report the same one.
// Releases set it with -ldflags "-X github.com/crayfish-backup/crayfish/node.Version=...".
var version = node.Version

const (
	defaultURL = "http://127.0.0.1:7300"
	envURL     = "CRAYFISH_URL"

	// clientAnnotation marks the commands that talk to an agent and so
	// use the global flags.
	clientAnnotation = "crayfish/client"

	outputText = "text"
	outputJSON = "json"
)

// Exit statuses.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// app is the state shared by the client commands: global flags and where
// output goes.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time

	url    string
	output string
	// callbackURL receives the started operation's completion.
	callbackURL string
	timeout     time.Duration
	// API credentials: a bearer token and TLS files (validate turns them
	// into token and httpClient).
	tokenFile  string
	tls        transport.TLSFiles
	token      string
	httpClient *http.Client

	// ran is set once a command's Run starts: errors before that come
	// from cobra (flags, arguments, unknown commands) and are usage errors.
	ran bool
}

// usageError marks an error as a usage error (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// opFailedError is an operation that finished without success under --wait.
type opFailedError struct{ msg string }

func (e opFailedError) Error() string { return e.msg }

// interruptedError is a client command stopped by SIGINT or SIGTERM.
type interruptedError struct{ msg string }

func (e interruptedError) Error() string { return e.msg }

// run executes one command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv, now: time.Now}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	return a.exitStatus(cmd, err)
}

// exitStatus prints err (if any) and maps it to an exit status.
func (a *app) exitStatus(cmd *cobra.Command, err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(a.stderr, "error: %s\n", a.describe(err))
	var ue usageError
	var ie interruptedError
	switch {
	case errors.As(err, &ue) || !a.ran:
		path := "crayfish"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", path)
		return exitUsage
	case errors.As(err, &ie):
		return exitInterrupted
	default:
		return exitError
	}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "crayfish",
		Short: "Cluster backup and restore: the agent daemon and its client",
		Long: "crayfish is the single binary of the crayfish backup system: \"crayfish agent\"\n" +
			"runs the daemon on each node; the other subcommands talk to any agent's HTTP API.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Annotations[clientAnnotation] == "" {
				return nil // the agent has its own configuration
			}
			return a.validate()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.HiddenDefaultCmd = true

	defURL := defaultURL
	if v := a.getenv(envURL); v != "" {
		defURL = v
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.url, "url", defURL, "agent URL; $"+envURL+" sets the default")
	pf.StringVarP(&a.output, "output", "o", outputText, "output format: text or json")
	pf.DurationVar(&a.timeout, "timeout", 30*time.Second, "timeout of each request (does not bound --wait)")
	pf.StringVar(&a.tokenFile, "token-file", a.getenv("CRAYFISH_TOKEN_FILE"), "file holding the API bearer token; $CRAYFISH_TOKEN_FILE sets the default ($CRAYFISH_TOKEN gives the token itself)")
	pf.StringVar(&a.tls.CAFile, "ca-file", a.getenv("CRAYFISH_CA_FILE"), "CA certificate(s) that sign the agent's HTTPS certificate; $CRAYFISH_CA_FILE")
	pf.StringVar(&a.tls.CertFile, "cert-file", a.getenv("CRAYFISH_CERT_FILE"), "client certificate for agents that require mutual TLS; $CRAYFISH_CERT_FILE")
	pf.StringVar(&a.tls.KeyFile, "key-file-tls", a.getenv("CRAYFISH_KEY_FILE_TLS"), "key of --cert-file; $CRAYFISH_KEY_FILE_TLS")

	clients := []*cobra.Command{
		a.backupCommand(),
		a.restoreCommand(),
		a.listCommand(),
		a.describeCommand(),
		a.deleteCommand(),
		a.statusCommand(),
		a.clusterCommand(),
		a.versionCommand(),
		a.initCommand(),
		a.keyCommand(),
		a.gcCommand(),
		a.cleanupCommand(),
		a.verifyCommand(),
		a.repairCommand(),
		a.drillCommand(),
		a.scheduleCommand(),
	}
	var annotate func(cs []*cobra.Command)
	annotate = func(cs []*cobra.Command) {
		for _, c := range cs {
			c.Annotations = map[string]string{clientAnnotation: "true"}
			annotate(c.Commands()) // subcommands (schedule add, cluster remove) talk to agents too
		}
	}
	annotate(clients)
	root.AddCommand(newAgentCommand(), newArchiveSegmentCommand())
	root.AddCommand(clients...)
	markRan(root, &a.ran)
	return root
}

// markRan wraps the Run functions of cmd and its subcommands so that *ran
// tells whether cobra's own checks had passed when an error came.
func markRan(cmd *cobra.Command, ran *bool) {
	if f := cmd.RunE; f != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error { *ran = true; return f(c, args) }
	} else if f := cmd.Run; f != nil {
		cmd.Run = func(c *cobra.Command, args []string) { *ran = true; f(c, args) }
	}
	for _, sub := range cmd.Commands() {
		markRan(sub, ran)
	}
}

// validate checks the global flags.
func (a *app) validate() error {
	switch a.output {
	case outputText, outputJSON:
	default:
		return usagef("--output must be text or json, not %q", a.output)
	}
	if a.timeout < 0 {
		return usagef("--timeout must not be negative")
	}
	u := strings.TrimSpace(a.url)
	if u == "" {
		return usagef("--url must not be empty")
	}
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return usagef("--url %q: want http://host:port", a.url)
	}
	a.url = u
	return a.credentials()
}

func (a *app) json() bool { return a.output == outputJSON }

func (a *app) client() *client.Client {
	c := client.New(a.url, a.httpClient)
	c.Timeout = a.timeout
	c.Token = a.token
	return c
}

// credentials loads the token and the TLS client settings.
func (a *app) credentials() error {
	a.token = strings.TrimSpace(a.getenv("CRAYFISH_TOKEN"))
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return usagef("--token-file: %v", err)
		}
		a.token = strings.TrimSpace(string(b))
	}
	if a.tls.CAFile == "" && a.tls.CertFile == "" && a.tls.KeyFile == "" {
		return nil
	}
	files := a.tls
	files.VerifyClients = files.CertFile != "" || files.KeyFile != ""
	cfg, err := files.ClientConfig()
	if err != nil {
		return usagef("%v", err)
	}
	a.httpClient = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}}
	return nil
}

// context returns the command's context, cancelled by SIGINT or SIGTERM.
// Only client commands use it, so the agent keeps its own signal handling.
func (a *app) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

// print writes v as JSON, or calls text in text mode.
func (a *app) print(v any, text func(io.Writer) error) error {
	if a.json() {
		return writeJSON(a.stdout, v)
	}
	return text(a.stdout)
}

// describe adds hints to errors that are not the agent's answers.
func (a *app) describe(err error) string {
	if errors.Is(err, client.ErrNoLeader) {
		return err.Error() + " (starting operations needs the Raft leader, see crayfish cluster; retrying with the same --id is safe)"
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		return err.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return fmt.Sprintf("cannot reach the agent at %s: %v (is it running? see --url or $%s)", a.url, oe, envURL)
	}
	var ie interruptedError
	if !errors.As(err, &ie) && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("%v (request timed out; see --timeout)", err)
	}
	return err.Error()
}

// interrupted turns the error of a call cut short by a signal into an
// interruptedError; other errors pass through.
func interrupted(ctx context.Context, err error, what string) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return interruptedError{"interrupted" + what}
	}
	return err
}

// noArgs, maxArgs and minArgs are cobra argument checks that report usage
// errors.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("%s takes at most %d argument(s), got %d", cmd.CommandPath(), n, len(args))
		}
		return nil
	}
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d", cmd.CommandPath(), n, len(args))
		}
		return nil
	}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("%s needs at least %d argument(s)", cmd.CommandPath(), n)
		}
		return nil
	}
}
