package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/crayfish-backup/crayfish/node"
	"github.com/crayfish-backup/crayfish/storage"
	"github.com/crayfish-backup/crayfish/storage/crypto"
)

// Commands that work on a repository directly, without an agent: init and
// key management (and, in disaster recovery, they need nothing else).

const envRepository = "CRAYFISH_REPOSITORY"

// repoFlags are the flags every direct-repository command shares.
type repoFlags struct {
	url          string
	passwordFile string
	keyFile      string
}

func (a *app) addRepoFlags(cmd *cobra.Command, f *repoFlags) {
	cmd.Flags().StringVar(&f.url, "repository", a.getenv(envRepository), "repository URL (file://, s3://, gs://, azblob://); $"+envRepository+" sets the default")
	cmd.Flags().StringVar(&f.passwordFile, "password-file", "", "file holding the repository password (default: $"+node.PasswordEnv+")")
	cmd.Flags().StringVar(&f.keyFile, "key-file", "", "file holding a repository key (64 hex characters)")
}

func (f *repoFlags) secret(a *app) (storage.Secret, error) {
	return node.LoadSecret(f.passwordFile, f.keyFile, a.getenv)
}

func (f *repoFlags) open(ctx context.Context, a *app) (*storage.Repository, error) {
	if f.url == "" {
		return nil, usagef("--repository is required")
	}
	s, err := f.secret(a)
	if err != nil {
		return nil, err
	}
	return storage.Open(ctx, f.url, storage.OpenOptions{Secret: s})
}

func (a *app) initCommand() *cobra.Command {
	var f repoFlags
	var noEncryption bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a repository (encrypted unless --no-encryption)",
		Long: "Create a repository at --repository. Its master key is wrapped by a password\n" +
			"(--password-file or $" + node.PasswordEnv + ") or by a key file (--key-file; a new one\n" +
			"is generated if the file does not exist). Keep the password or key file: without\n" +
			"it no backup can be read.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			if f.url == "" {
				return usagef("--repository is required")
			}
			var s storage.Secret
			generated := false
			if f.keyFile != "" {
				if _, err := os.Stat(f.keyFile); errors.Is(err, os.ErrNotExist) {
					k, err := node.WriteNewKeyFile(f.keyFile)
					if err != nil {
						return err
					}
					s, generated = storage.Secret{KeyMaterial: k}, true
				}
			}
			if !generated {
				var err error
				if s, err = f.secret(a); err != nil {
					return err
				}
			}
			if noEncryption && !s.IsZero() {
				return usagef("--no-encryption and a password or key file exclude each other")
			}
			r, err := storage.Init(ctx, f.url, storage.InitOptions{Secret: s, NoEncryption: noEncryption, KeyLabel: "init"})
			if err != nil {
				return err
			}
			defer r.Close()
			cfg := r.Config()
			return a.print(cfg, func(w io.Writer) error {
				fmt.Fprintf(w, "created repository %s (id %.12s, encryption %s)\n", f.url, cfg.ID, cfg.Encryption)
				if generated {
					fmt.Fprintf(w, "generated key file %s: keep a copy somewhere safe\n", f.keyFile)
				}
				return nil
			})
		},
	}
	a.addRepoFlags(cmd, &f)
	cmd.Flags().BoolVar(&noEncryption, "no-encryption", false, "store blobs unencrypted (must be explicit)")
	return cmd
}

func (a *app) keyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage the keys that unlock a repository (list, add, remove)",
	}
	cmd.AddCommand(a.keyListCommand(), a.keyAddCommand(), a.keyRemoveCommand())
	return cmd
}

func (a *app) keyListCommand() *cobra.Command {
	var f repoFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the repository's keys",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			r, err := f.open(ctx, a)
			if err != nil {
				return err
			}
			defer r.Close()
			keys, err := r.Keys(ctx)
			if err != nil {
				return err
			}
			return a.print(keys, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tKDF\tLABEL\tUSER@HOST\tCREATED\tCURRENT")
				for _, k := range keys {
					cur := ""
					if k.Current {
						cur = "*"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s@%s\t%s\t%s\n", k.ID, k.KDF, orDash(k.Label), k.Username, k.Hostname,
						k.Created.Local().Format("2006-01-02 15:04:05"), cur)
				}
				return tw.Flush()
			})
		},
	}
	a.addRepoFlags(cmd, &f)
	return cmd
}

func (a *app) keyAddCommand() *cobra.Command {
	var f repoFlags
	var newPasswordFile, newKeyFile, label string
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Add a key: a new password or key file that also unlocks the repository",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			if (newPasswordFile == "") == (newKeyFile == "") {
				return usagef("give exactly one of --new-password-file and --new-key-file")
			}
			r, err := f.open(ctx, a)
			if err != nil {
				return err
			}
			defer r.Close()
			var s storage.Secret
			if newKeyFile != "" {
				if _, err := os.Stat(newKeyFile); errors.Is(err, os.ErrNotExist) {
					k, err := node.WriteNewKeyFile(newKeyFile)
					if err != nil {
						return err
					}
					s = storage.Secret{KeyMaterial: k}
				} else if s, err = node.LoadSecret("", newKeyFile, a.getenv); err != nil {
					return err
				}
			} else if s, err = node.LoadSecret(newPasswordFile, "", a.getenv); err != nil {
				return err
			}
			k, err := r.AddKey(ctx, s, label, crypto.ScryptParams{})
			if err != nil {
				return err
			}
			return a.print(k, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "added key %s\n", k.ID)
				return err
			})
		},
	}
	a.addRepoFlags(cmd, &f)
	cmd.Flags().StringVar(&newPasswordFile, "new-password-file", "", "file holding the new password")
	cmd.Flags().StringVar(&newKeyFile, "new-key-file", "", "file holding the new key (generated if it does not exist)")
	cmd.Flags().StringVar(&label, "label", "", "a note on the key (whose it is)")
	return cmd
}

func (a *app) keyRemoveCommand() *cobra.Command {
	var f repoFlags
	cmd := &cobra.Command{
		Use:   "remove KEY_ID",
		Short: "Remove a key (not the one in use, not the last one)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			r, err := f.open(ctx, a)
			if err != nil {
				return err
			}
			defer r.Close()
			if err := r.RemoveKey(ctx, args[0]); err != nil {
				return err
			}
			return a.print(map[string]string{"removed": args[0]}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "removed key %s\n", args[0])
				return err
			})
		},
	}
	a.addRepoFlags(cmd, &f)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
