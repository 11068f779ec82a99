package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVerifyClean(t *testing.T) {
	_, r, _ := twoBackups(t)
	var phases []string
	rep := problemsOf(t, r, VerifyOptions{ReadData: true, Progress: func(p VerifyProgress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	}})
	if len(rep.Problems) != 0 || rep.Snapshots != 2 || rep.Packs != 4 || rep.Blobs != 22 || rep.PacksRead != 4 || rep.BytesRead == 0 {
		t.Fatalf("report %+v", rep)
	}
	if fmt.Sprint(phases) != "[packs read snapshots]" {
		t.Fatalf("phases %v", phases)
	}
}

func TestVerifyMissingPack(t *testing.T) {
	url, r, files := twoBackups(t)
	key := only(files["b1"], "data/")
	os.Remove(filepath.Join(strings.TrimPrefix(url, "file://"), key))
	rep := problemsOf(t, r, VerifyOptions{})
	if len(rep.Problems) != 1 {
		t.Fatalf("problems %+v", rep.Problems)
	}
	p := rep.Problems[0]
	if p.Kind != ProblemMissing || p.Object != key || fmt.Sprint(p.Backups) != "[b1]" {
		t.Fatalf("problem %+v", p)
	}
	// A missing meta pack: the file list cannot load either.
	key = only(files["b2"], "meta/")
	os.Remove(filepath.Join(strings.TrimPrefix(url, "file://"), key))
	rep = problemsOf(t, r, VerifyOptions{})
	found := false
	for _, p := range rep.Problems {
		if p.Object == key && p.Kind == ProblemMissing && fmt.Sprint(p.Backups) == "[b2]" {
			found = true
		}
	}
	if !found {
		t.Fatalf("missing meta pack not reported for b2: %+v", rep.Problems)
	}
}

func TestVerifyCorruptPack(t *testing.T) {
	url, r, files := twoBackups(t)
	key := only(files["b2"], "data/")
	p := filepath.Join(strings.TrimPrefix(url, "file://"), key)
	b, _ := os.ReadFile(p)
	b[100] ^= 0x40 // inside the first record
	os.WriteFile(p, b, 0o644)
	// The structure check cannot see it; reading the data does.
	if rep := problemsOf(t, r, VerifyOptions{}); len(rep.Problems) != 0 {
		t.Fatalf("without reading: %+v", rep.Problems)
	}
	rep := problemsOf(t, r, VerifyOptions{ReadData: true})
	if len(rep.Problems) != 1 {
		t.Fatalf("problems %+v", rep.Problems)
	}
	pr := rep.Problems[0]
	if pr.Kind != ProblemCorrupt || len(pr.Object) != 64 || !strings.Contains(pr.Detail, key) || fmt.Sprint(pr.Backups) != "[b2]" {
		t.Fatalf("problem %+v", pr)
	}
	// A flip in the footer.
	b[100] ^= 0x40
	b[len(b)-30] ^= 1
	os.WriteFile(p, b, 0o644)
	rep = problemsOf(t, r, VerifyOptions{ReadData: true})
	if len(rep.Problems) != 1 || rep.Problems[0].Object != key || rep.Problems[0].Kind != ProblemCorrupt ||
		fmt.Sprint(rep.Problems[0].Backups) != "[b2]" {
		t.Fatalf("footer flip: %+v", rep.Problems)
	}
}

func TestVerifyTruncatedPack(t *testing.T) {
	url, r, files := twoBackups(t)
	key := only(files["b1"], "data/")
	p := filepath.Join(strings.TrimPrefix(url, "file://"), key)
	b, _ := os.ReadFile(p)
	os.WriteFile(p, b[:len(b)-100], 0o644)
	rep := problemsOf(t, r, VerifyOptions{ReadData: true})
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != ProblemSize || rep.Problems[0].Object != key ||
		fmt.Sprint(rep.Problems[0].Backups) != "[b1]" {
		t.Fatalf("problems %+v", rep.Problems)
	}
}

func TestVerifyUnindexedBlobs(t *testing.T) {
	url, r, files := twoBackups(t)
	seg := only(files["b2"], "index/")
	os.Remove(filepath.Join(strings.TrimPrefix(url, "file://"), seg))
	rep := problemsOf(t, r, VerifyOptions{ReadData: true})
	if len(rep.Problems) == 0 {
		t.Fatal("no problem")
	}
	for _, p := range rep.Problems {
		if p.Kind != ProblemUnindexedBlob || fmt.Sprint(p.Backups) != "[b2]" {
			t.Fatalf("problem %+v", p)
		}
	}
	if rep.Packs != 2 {
		t.Fatalf("%d packs indexed", rep.Packs)
	}
	// An unreadable snapshot.
	p := filepath.Join(strings.TrimPrefix(url, "file://"), "snapshots", "b1")
	b, _ := os.ReadFile(p)
	b[20] ^= 1
	os.WriteFile(p, b, 0o644)
	rep = problemsOf(t, r, VerifyOptions{})
	found := false
	for _, p := range rep.Problems {
		found = found || (p.Kind == ProblemUnreadableSnapshot && p.Object == "snapshots/b1" && fmt.Sprint(p.Backups) == "[b1]")
	}
	if !found {
		t.Fatalf("unreadable snapshot not reported: %+v", rep.Problems)
	}
}

func TestVerifyReadsASubset(t *testing.T) {
	ctx := context.Background()
	_, r := newFileRepo(t)
	rng := rand.New(rand.NewPCG(6, 6))
	for i := range 100 {
		m := stageBackup(t, r, fmt.Sprintf("s%03d", i), randChunks(rng, 1, 200))
		commit(t, r, m) // one data and one meta pack per backup
	}
	all := problemsOf(t, r, VerifyOptions{ReadDataSubset: 1})
	if all.Packs != 200 || all.PacksRead != 200 {
		t.Fatalf("p=1: %+v", all)
	}
	var reads []int
	for seed := range uint64(5) {
		rep, err := r.Verify(ctx, VerifyOptions{ReadDataSubset: 0.25, Seed: seed})
		if err != nil || len(rep.Problems) != 0 {
			t.Fatal(err, rep.Problems)
		}
		if rep.PacksRead < 25 || rep.PacksRead > 75 {
			t.Fatalf("seed %d: %d of 200 packs read for p=0.25", seed, rep.PacksRead)
		}
		again, _ := r.Verify(ctx, VerifyOptions{ReadDataSubset: 0.25, Seed: seed})
		if again.PacksRead != rep.PacksRead || again.BytesRead != rep.BytesRead {
			t.Fatal("the same seed chose differently")
		}
		reads = append(reads, rep.PacksRead)
	}
	t.Logf("packs read for p=0.25 by seed: %v", reads)
	if none, _ := r.Verify(ctx, VerifyOptions{}); none.PacksRead != 0 {
		t.Fatal("read data without being asked")
	}
}
