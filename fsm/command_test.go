package fsm

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestEncodeRefusesEntriesOverTheLimit: a command whose entry would exceed
// MaxEntryBytes is refused at encoding, marked ErrEntryTooLarge; one just
// under it encodes.
func TestEncodeRefusesEntriesOverTheLimit(t *testing.T) {
	c := Command{Type: CmdStepDone, OpID: "op1", Step: 3}
	c.Result = json.RawMessage(`"` + strings.Repeat("x", MaxEntryBytes-200) + `"`)
	b, err := c.Encode()
	if err != nil || len(b) > MaxEntryBytes {
		t.Fatalf("%d bytes: %v", len(b), err)
	}
	c.Result = json.RawMessage(`"` + strings.Repeat("x", MaxEntryBytes) + `"`)
	if _, err := c.Encode(); !errors.Is(err, ErrEntryTooLarge) || !strings.Contains(err.Error(), "op1 step 3") {
		t.Fatalf("err %v", err)
	}
}
