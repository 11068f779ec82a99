// Package crypto holds the cryptography of repository format v1: the master
// key, the per-purpose subkeys derived from it, the AEAD that seals blobs,
// pack footers, index segments and snapshots, and the key files that store
// the master key wrapped under a password or key material.
//
// # Keys
//
// The master key is 32 random bytes. It encrypts nothing itself. Each
// purpose ("data", "index", "snapshot", ...) gets its own 32-byte subkey:
//
//	subkey = HKDF-SHA256(secret = master key, salt = repository id, info = "crayfish/v1/" + purpose)
//
// One repository-wide data subkey lets a repack copy sealed records
// verbatim into new packs.
//
// # Sealed messages
//
// An encrypting Cipher is AES-256-GCM with a fresh random 96-bit nonce per
// message (crypto/cipher.NewGCMWithRandomNonce):
//
//	sealed = nonce[12] ‖ ciphertext ‖ tag[16]          (Overhead = 28 bytes)
//
// The caller's AAD (additional authenticated data) binds each message to
// its context, for instance a blob id, type and codec, so sealed bytes
// cannot be moved elsewhere. A failed Open returns ErrAuth. A key must not
// seal more than 2^32 messages.
//
// NoEncryption returns the cipher of unencrypted repositories: Seal and
// Open copy bytes unchanged, ignore the AAD, and Overhead() is 0, so both
// kinds of repository share code paths. Callers still verify the SHA-256 of
// every plaintext, which is then the only integrity check.
//
// # Key files
//
// The repository object keys/<id> holds one KeyFile as JSON:
//
//	{"version": 1,
//	 "id": "<16 hex chars: 8 random bytes>",
//	 "kdf": "scrypt" | "raw",
//	 "n": N, "r": r, "p": p, "salt": "<base64>",   (scrypt only; salt 32 random bytes)
//	 "wrapped": "<base64 of 60 bytes>",
//	 "created": "<RFC 3339>", "hostname": "...", "username": "...", "label": "..."}
//
// wrapped = AES-256-GCM sealed master key (nonce ‖ ciphertext ‖ tag) under
// the key-encryption key KEK, with AAD "crayfish/v1/key/" + id:
//
//	kdf "scrypt": KEK = scrypt(password, salt, N, r, p, 32), default N=2^17, r=8, p=1
//	kdf "raw":    KEK = the 32 bytes of key material (a key file on disk holds
//	              them as 64 hex characters and a newline)
//
// Unwrap refuses hostile parameters before doing any work: N must be a
// power of two ≤ 2^22, r*p ≤ 2^10, and 128·N·r (scrypt's memory) ≤ 4 GiB;
// the salt must be 16..1024 bytes. A secret that does not unwrap the key
// gives ErrWrongPassword.
//
// # Boundaries
//
// This package only transforms byte slices. It must not perform object
// storage or file I/O or know the repository layout (where key files,
// packs or indexes live); callers read and write the bytes, and fill in
// the informational Hostname and Username of new key files. The wrapped
// key's AAD is built by storage/internal/header, like every v1 AAD.
package crypto
