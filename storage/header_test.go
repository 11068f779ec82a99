package storage

import (
	"encoding/hex"
	"testing"
)

// TestObjectHeadersPinned pins the headers and AADs of the repository's
// own sealed objects (docs/repository-format.md): existing snapshots,
// plans and damage records must keep opening.
func TestObjectHeadersPinned(t *testing.T) {
	x := func(s string) string { return hex.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		enc  string
		flag string
	}{{"none", "00"}, {"aes-256-gcm", "01"}} {
		r := &Repository{cfg: Config{Encryption: c.enc}}
		pad := "01" + c.flag + "00000000000000000000"
		check := func(what string, got []byte, want string) {
			t.Helper()
			if hex.EncodeToString(got) != want {
				t.Errorf("%s (%s): %x, want %s", what, c.enc, got, want)
			}
		}
		check("snapshot header", r.snapshotHeader(), x("CFSN")+pad)
		check("snapshot AAD", snapshotAAD(r.snapshotHeader(), "b-1"), x("CFSN")+pad+x("crayfish/v1/snapshot/b-1"))
		check("plan header", r.planHeader(), x("CFGP")+pad)
		check("plan AAD", planAAD(r.planHeader()), x("CFGP")+pad+x("crayfish/v1/gc-plan"))
		check("damaged header", r.damagedHeader(), x("CFDM")+pad)
		key := damagedKey(storedCopy{pack: ObjectID{0xab}, offset: 0x10})
		check("damaged AAD", damagedRecordAAD(r.damagedHeader(), key),
			x("CFDM")+pad+x("crayfish/v1/damaged/"+ObjectID{0xab}.String()+"/00000010"))
	}
}
