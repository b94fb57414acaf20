// Command follow reads one log of an auditlog deployment the way a third party would: with
// Tessera's client library (github.com/transparency-dev/tessera/client) over the log's C2SP
// tlog-tiles read API, trusting nothing but the log's vkey.
//
//	follow -log_url http://host:8000/v1/logs/audit.events-0/ -vkey VKEY [-bearer_token T]
//	       [-samples N] [-old_checkpoint FILE]
//
// The vkey's key name is the log's origin (C2SP's convention, which Tessera's client checks). It
// fetches and verifies the latest checkpoint; with -old_checkpoint, a checkpoint verified
// before, it proves the new one consistent with it (Tessera's LogStateTracker); then, for N
// sampled indices (the first, the last, and evenly spread ones), it reads the entry from its
// entry bundle, hashes it as an RFC 6962 leaf, checks that hash against the level-0 tile, builds
// the inclusion proof from tiles and verifies it against the checkpoint's root. Any failure
// exits 1 with the reason on stderr; success prints a JSON report on stdout.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
)

type sample struct {
	Index       uint64 `json:"index"`
	LeafHash    string `json:"leaf_hash"`
	EntrySHA256 string `json:"entry_sha256"`
	ProofLen    int    `json:"proof_len"`
}

type report struct {
	Origin         string   `json:"origin"`
	Size           uint64   `json:"size"`
	Root           string   `json:"root"`
	Checkpoint     string   `json:"checkpoint"`
	ConsistentFrom uint64   `json:"consistent_from"`
	ConsistencyLen int      `json:"consistency_proof_len"`
	Samples        []sample `json:"samples"`
}

func main() {
	logURL := flag.String("log_url", "", "the log's tlog-tiles root, e.g. http://127.0.0.1:8000/v1/logs/audit.events-0/")
	vkey := flag.String("vkey", "", "the log's verifier key; its key name is the log's origin")
	token := flag.String("bearer_token", "", "API token for entry bundles (search scope, no tenant)")
	samples := flag.Uint64("samples", 16, "how many entries to prove included")
	oldFile := flag.String("old_checkpoint", "", "a checkpoint verified earlier: prove the new one consistent with it")
	flag.Parse()
	rep, err := follow(*logURL, *vkey, *token, *samples, *oldFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "follow:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fmt.Fprintln(os.Stderr, "follow:", err)
		os.Exit(1)
	}
}

func follow(logURL, vkey, token string, samples uint64, oldFile string) (*report, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("vkey: %v", err)
	}
	origin := verifier.Name()
	root, err := url.Parse(logURL)
	if err != nil {
		return nil, fmt.Errorf("log_url: %v", err)
	}
	fetcher, err := client.NewHTTPFetcher(root, http.DefaultClient)
	if err != nil {
		return nil, err
	}
	if token != "" {
		fetcher.SetAuthorizationHeader("Bearer " + token)
	}
	var oldRaw []byte
	if oldFile != "" {
		if oldRaw, err = os.ReadFile(oldFile); err != nil {
			return nil, err
		}
	}
	consensus := client.UnilateralConsensus(fetcher.ReadCheckpoint)
	rep := &report{Origin: origin}
	var tracker *client.LogStateTracker
	if oldRaw == nil {
		_, raw, _, err := client.FetchCheckpoint(ctx, fetcher.ReadCheckpoint, verifier, origin)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %v", err)
		}
		if tracker, err = client.NewLogStateTracker(ctx, fetcher.ReadTile, raw, verifier, origin, consensus); err != nil {
			return nil, fmt.Errorf("LogStateTracker: %v", err)
		}
		rep.Checkpoint = string(raw)
	} else {
		if tracker, err = client.NewLogStateTracker(ctx, fetcher.ReadTile, oldRaw, verifier, origin, consensus); err != nil {
			return nil, fmt.Errorf("old checkpoint: %v", err)
		}
		old := tracker.Latest()
		_, consistency, raw, err := tracker.Update(ctx)
		if err != nil {
			return nil, fmt.Errorf("update from size %d: %v", old.Size, err)
		}
		if tracker.Latest().Size <= old.Size {
			return nil, fmt.Errorf("the log did not grow past size %d", old.Size)
		}
		rep.Checkpoint, rep.ConsistentFrom, rep.ConsistencyLen = string(raw), old.Size, len(consistency)
	}
	cp := tracker.Latest()
	rep.Size, rep.Root = cp.Size, base64.StdEncoding.EncodeToString(cp.Hash)
	if cp.Size == 0 {
		return rep, nil
	}
	builder, err := client.NewProofBuilder(ctx, cp.Size, fetcher.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("ProofBuilder: %v", err)
	}
	for _, i := range indices(cp.Size, samples) {
		bundle, err := client.GetEntryBundle(ctx, fetcher.ReadEntryBundle, i/256, cp.Size)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %v", i, err)
		}
		if uint64(len(bundle.Entries)) <= i%256 {
			return nil, fmt.Errorf("entry %d: its bundle holds %d entries", i, len(bundle.Entries))
		}
		entry := bundle.Entries[i%256]
		leaf := rfc6962.DefaultHasher.HashLeaf(entry)
		tiled, err := client.FetchLeafHashes(ctx, fetcher.ReadTile, i, 1, cp.Size)
		if err != nil {
			return nil, fmt.Errorf("leaf hash %d: %v", i, err)
		}
		if hex.EncodeToString(tiled[0]) != hex.EncodeToString(leaf) {
			return nil, fmt.Errorf("entry %d: its hash is not the tile's leaf hash", i)
		}
		inclusion, err := builder.InclusionProof(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("inclusion proof %d: %v", i, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, cp.Size, leaf, inclusion, cp.Hash); err != nil {
			return nil, fmt.Errorf("inclusion of %d in size %d: %v", i, cp.Size, err)
		}
		digest := sha256.Sum256(entry)
		rep.Samples = append(rep.Samples, sample{i, hex.EncodeToString(leaf), hex.EncodeToString(digest[:]), len(inclusion)})
	}
	return rep, nil
}

// indices are the first and last index and up to n-2 evenly spread between them.
func indices(size, n uint64) []uint64 {
	if n == 0 {
		return nil
	}
	seen := map[uint64]bool{}
	var out []uint64
	add := func(i uint64) {
		if !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	add(0)
	add(size - 1)
	for k := uint64(1); k+1 < n && k < size; k++ {
		add(k * (size - 1) / (n - 1))
	}
	return out
}
