package m3db

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/m3db/fileset"
	"github.com/crayfish-backup/crayfish/m3db/m3pb"
)

// NodeMeta is what the manifest records of a backed-up M3DB node: enough
// for describe and for the restore planner, which sees no files.
type NodeMeta struct {
	InstanceID string `json:"instance_id"`
	// Endpoint is the instance's endpoint in the backed-up placement.
	Endpoint string `json:"endpoint,omitempty"`
	// Revision is the etcd revision the placement and namespaces were
	// read at.
	Revision int64 `json:"revision"`
	// Instances are every instance id of the backed-up placement: a full
	// restore needs a node for each.
	Instances []string `json:"instances,omitempty"`
	// Shards counts the instance's shards by state.
	Shards map[string]int `json:"shards,omitempty"`
	// Namespaces are the registry's namespaces at the backup.
	Namespaces []Namespace `json:"namespaces,omitempty"`
	// DataBytes are the bytes of series data (data and snapshot
	// filesets' data files) taken, by namespace: a restore reads back a
	// sample of every namespace that had some.
	DataBytes map[string]int64 `json:"data_bytes,omitempty"`
	// Filesets counts the complete and intact filesets taken, by kind.
	Filesets map[fileset.Kind]int `json:"filesets"`
	// Skipped names the filesets left out (the first maxListed of
	// SkippedTotal) and why.
	Skipped      []Skipped `json:"skipped,omitempty"`
	SkippedTotal int       `json:"skipped_total,omitempty"`
}

// Namespace is one namespace of a backed-up registry.
type Namespace struct {
	Name      string        `json:"name"`
	Retention time.Duration `json:"retention"`
	BlockSize time.Duration `json:"block_size"`
}

// Skipped is a fileset a backup left out.
type Skipped struct {
	Fileset string `json:"fileset"`
	Problem string `json:"problem"`
}

// describeCluster fills what meta records of the placement and registry
// captured in c.
func (m *NodeMeta) describeCluster(s *Settings, c EtcdCapture) error {
	for _, k := range c.Keys {
		switch k.Key {
		case s.PlacementKey():
			p, err := m3pb.UnmarshalPlacement(k.Value)
			if err != nil {
				return err
			}
			m.Instances = slices.Sorted(maps.Keys(p.GetInstances()))
			if in := p.GetInstances()[s.InstanceID]; in != nil {
				m.Endpoint = in.GetEndpoint()
				m.Shards = map[string]int{}
				for _, sh := range in.GetShards() {
					m.Shards[sh.GetState().String()]++
				}
			}
		case s.NamespacesKey():
			r, err := m3pb.UnmarshalRegistry(k.Value)
			if err != nil {
				return err
			}
			for _, name := range slices.Sorted(maps.Keys(r.GetNamespaces())) {
				ro := r.GetNamespaces()[name].GetRetentionOptions()
				m.Namespaces = append(m.Namespaces, Namespace{Name: name,
					Retention: time.Duration(ro.GetRetentionPeriodNanos()), BlockSize: time.Duration(ro.GetBlockSizeNanos())})
			}
		}
	}
	if !slices.Contains(m.Instances, s.InstanceID) {
		return fmt.Errorf("instance %q (m3db_instance_id) is not in the placement at %s (it has %s)",
			s.InstanceID, s.PlacementKey(), strings.Join(m.Instances, ", "))
	}
	return nil
}

// namespaceNames lists the backed-up namespaces.
func (m *NodeMeta) namespaceNames() []string {
	var out []string
	for _, n := range m.Namespaces {
		out = append(out, n.Name)
	}
	return out
}

// DescribeColumns are the columns crayfish describe shows per node.
func (Driver) DescribeColumns() []string {
	return []string{"M3DB INSTANCE", "ENDPOINT", "SHARDS", "NAMESPACES", "ETCD REVISION", "FILESETS", "SKIPPED"}
}

// Describe is one node's row of DescribeColumns.
func (Driver) Describe(raw json.RawMessage) (map[string]string, error) {
	var m NodeMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("m3db metadata: %w", err)
	}
	var fs, shards, nss []string
	for _, k := range slices.Sorted(maps.Keys(m.Filesets)) {
		fs = append(fs, fmt.Sprintf("%s %d", k, m.Filesets[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(m.Shards)) {
		shards = append(shards, fmt.Sprintf("%d %s", m.Shards[k], k))
	}
	for _, n := range m.Namespaces {
		nss = append(nss, fmt.Sprintf("%s (retention %s, block %s)", n.Name, n.Retention, n.BlockSize))
	}
	return map[string]string{"M3DB INSTANCE": m.InstanceID, "ENDPOINT": m.Endpoint,
		"SHARDS": strings.Join(shards, ", "), "NAMESPACES": strings.Join(nss, ", "),
		"ETCD REVISION": strconv.FormatInt(m.Revision, 10),
		"FILESETS":      strings.Join(fs, ", "), "SKIPPED": strconv.Itoa(m.SkippedTotal)}, nil
}
