package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/crayfish-backup/crayfish/node"
)

func newAgentCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the crayfish agent (the daemon on every database host)",
		Long: `Run the crayfish agent.

Configuration comes from, in increasing precedence: built-in defaults, the
YAML file given with --config, CRAYFISH_* environment variables, and flags.
Every YAML key has a flag (node_id → --node-id) and an environment variable
(node_id → CRAYFISH_NODE_ID).`,
		Args: cobra.NoArgs,
	}
	configPath := cmd.Flags().String("config", "", "YAML configuration file")
	registerConfigFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadAgentConfig(*configPath, cmd.Flags(), os.Environ())
		if err != nil {
			return err
		}
		var level slog.Level
		_ = level.UnmarshalText([]byte(cfg.LogLevel))
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		agent, err := node.NewAgent(ctx, cfg, log)
		if err != nil {
			return err
		}
		return agent.Run(ctx)
	}
	return cmd
}

func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }
func envName(key string) string  { return "CRAYFISH_" + strings.ToUpper(key) }

// registerConfigFlags adds one string flag per config field; values are
// parsed by setField exactly like environment variables.
func registerConfigFlags(fs *pflag.FlagSet) {
	def := newConfig()
	for _, f := range def.Fields() {
		if f.FileOnly {
			continue
		}
		dv := f.Value
		defText := ""
		if list, ok := dv.Interface().([]string); ok {
			defText = strings.Join(list, ",")
		} else if !dv.IsZero() {
			defText = fmt.Sprint(dv.Interface())
		}
		help := f.Help + " [env " + envName(f.Key) + "]"
		fs.String(flagName(f.Key), defText, help)
		if dv.Kind() == reflect.Bool {
			fs.Lookup(flagName(f.Key)).NoOptDefVal = "true" // --in-place alone means true
		}
	}
}

func loadAgentConfig(path string, fs *pflag.FlagSet, environ []string) (node.Config, error) {
	cfg := newConfig()
	if path != "" {
		if err := node.LoadConfigFile(path, &cfg); err != nil {
			return cfg, err
		}
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	known := map[string]bool{"CRAYFISH_URL": true, "CRAYFISH_PASSWORD": true}
	for _, f := range cfg.Fields() {
		if f.FileOnly {
			continue
		}
		key := f.Key
		known[envName(key)] = true
		if s, ok := env[envName(key)]; ok {
			if err := setField(f.Value, s); err != nil {
				return cfg, fmt.Errorf("environment %s: %w", envName(key), err)
			}
		}
		if fl := fs.Lookup(flagName(key)); fl != nil && fl.Changed {
			if err := setField(f.Value, fl.Value.String()); err != nil {
				return cfg, fmt.Errorf("flag --%s: %w", flagName(key), err)
			}
		}
	}
	// A typo in an environment variable would silently do nothing; say so.
	for k := range env {
		if strings.HasPrefix(k, "CRAYFISH_") && !known[k] {
			fmt.Fprintf(os.Stderr, "warning: ignoring unknown environment variable %s\n", k)
		}
	}
	return cfg, cfg.Finish()
}

func setField(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case string:
		v.SetString(s)
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case int, int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		v.SetInt(n)
	case []string:
		var list []string
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		v.Set(reflect.ValueOf(list))
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	default:
		return fmt.Errorf("unsupported config type %s", v.Type())
	}
	return nil
}
