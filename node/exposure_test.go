package node

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

func TestCheckExposure(t *testing.T) {
	loop := Config{HTTPAddr: "127.0.0.1:7300", RaftAddr: "127.0.0.2:7301", GossipAddr: "localhost:7302"}
	if err := loop.checkExposure(); err != nil {
		t.Fatalf("loopback listeners refused: %v", err)
	}
	for _, c := range []struct {
		cfg  Config
		want []string // settings the error must name; none: accepted
	}{
		{Config{HTTPAddr: "0.0.0.0:7300", RaftAddr: "127.0.0.1:7301", GossipAddr: "127.0.0.1:7302"}, []string{"http_addr 0.0.0.0:7300", "api_token_file", "--insecure"}},
		{Config{HTTPAddr: ":7300", RaftAddr: "10.1.2.3:7301", GossipAddr: "[::]:7302"}, []string{"http_addr :7300", "raft_addr 10.1.2.3:7301", "gossip_addr [::]:7302"}},
		{Config{HTTPAddr: "10.0.0.1:7300", RaftAddr: "127.0.0.1:7301", GossipAddr: "127.0.0.1:7302", APITokenFile: "t"}, nil},
		// Tokens do not guard Raft; mutual TLS does.
		{Config{HTTPAddr: "10.0.0.1:7300", RaftAddr: "10.0.0.1:7301", GossipAddr: "127.0.0.1:7302", APITokenFile: "t"}, []string{"raft_addr", "Raft takes no tokens"}},
		{Config{HTTPAddr: "10.0.0.1:7300", RaftAddr: "10.0.0.1:7301", GossipAddr: "10.0.0.1:7302", TLSCertFile: "c", TLSCAFile: "ca", TLSVerifyClients: true, GossipKeyFile: "k"}, nil},
		// TLS without client verification is not mutual.
		{Config{HTTPAddr: "10.0.0.1:7300", RaftAddr: "127.0.0.1:7301", GossipAddr: "127.0.0.1:7302", TLSCertFile: "c", TLSCAFile: "ca"}, []string{"http_addr"}},
		{Config{HTTPAddr: "0.0.0.0:7300", RaftAddr: "0.0.0.0:7301", GossipAddr: "0.0.0.0:7302", Insecure: true}, nil},
	} {
		err := c.cfg.checkExposure()
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%+v refused: %v", c.cfg, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v accepted; want refused", c.cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q does not name %q", c.cfg, err, w)
			}
		}
	}
}

// TestSkipListFitsBodyLimit: the largest upload request the dedup step
// can make stays under the internal body limit.
func TestSkipListFitsBodyLimit(t *testing.T) {
	skip := make([]storage.ObjectID, wire.MaxSkipChunks)
	for i := range skip {
		skip[i][0], skip[i][1], skip[i][2] = byte(i), byte(i>>8), byte(i>>16)
	}
	b, err := json.Marshal(wire.StepRequest{Ref: wire.StepRef{OpID: strings.Repeat("o", 128), Epoch: 1 << 62, Step: 1000}, Name: wire.StepUpload, Skip: skip})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) >= maxInternalBodyBytes {
		t.Fatalf("a full skip list is %d bytes, over the %d limit", len(b), maxInternalBodyBytes)
	}
}
