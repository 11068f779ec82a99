package header

// Size is the length of every v1 object header.
const Size = 16

// Version is the object version byte of format v1.
const Version = 1

// FlagEncrypted is flag bit 0: the object's body is sealed by an
// encrypting cipher.
const FlagEncrypted = 1 << 0

// New returns the Size-byte header of a v1 object: the 4-byte magic,
// version 1, flags (bit 0: encrypted), zero padding. A v1 header is fully
// determined by the magic and the encryption flag.
func New(magic string, encrypted bool) []byte {
	if len(magic) != 4 {
		panic("header: magic must be 4 bytes, not " + magic)
	}
	h := make([]byte, Size)
	copy(h, magic)
	h[4] = Version
	if encrypted {
		h[5] = FlagEncrypted
	}
	return h
}

// AAD returns the additional authenticated data prefix ‖ parts…, in a
// new slice (prefix is not modified). prefix is the object's header, or
// nil for messages without one (blob records' tags, wrapped keys).
func AAD(prefix []byte, parts ...string) []byte {
	n := len(prefix)
	for _, p := range parts {
		n += len(p)
	}
	a := make([]byte, 0, n)
	a = append(a, prefix...)
	for _, p := range parts {
		a = append(a, p...)
	}
	return a
}
