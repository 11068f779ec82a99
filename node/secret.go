package node

import (
	"bytes"
	"fmt"
	"os"

	"github.com/crayfish-backup/crayfish/storage"
	"github.com/crayfish-backup/crayfish/storage/crypto"
)

// PasswordEnv is the environment variable holding the repository password,
// as restic does it; a password file or key file takes precedence.
const PasswordEnv = "CRAYFISH_PASSWORD"

// LoadSecret reads the repository secret from a key file, a password file
// or the environment, in that order. No source gives an empty Secret.
func LoadSecret(passwordFile, keyFile string, getenv func(string) string) (storage.Secret, error) {
	switch {
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return storage.Secret{}, fmt.Errorf("key file: %w", err)
		}
		k, err := crypto.DecodeKeyMaterial(b)
		if err != nil {
			return storage.Secret{}, fmt.Errorf("key file %s: %w", keyFile, err)
		}
		return storage.Secret{KeyMaterial: k}, nil
	case passwordFile != "":
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			return storage.Secret{}, fmt.Errorf("password file: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return storage.Secret{}, fmt.Errorf("password file %s is empty", passwordFile)
		}
		return storage.Secret{Password: b}, nil
	case getenv(PasswordEnv) != "":
		return storage.Secret{Password: []byte(getenv(PasswordEnv))}, nil
	}
	return storage.Secret{}, nil
}

// WriteNewKeyFile creates path (mode 0600, refusing to overwrite) holding
// fresh key material and returns it.
func WriteNewKeyFile(path string) ([]byte, error) {
	k := crypto.GenerateKeyMaterial()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("new key file: %w", err)
	}
	if _, err := f.Write(crypto.EncodeKeyMaterial(k)); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return k, f.Close()
}
