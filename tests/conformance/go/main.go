// Command conformance cross-checks auditlog's Python core against Go's
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog, an independent
// implementation of signed notes, RFC 6962 tree hashing, proofs and tiles.
//
//	conformance check   < ours.json    verify what the Python code produced
//	conformance produce < leaves.json  produce Go's own note, tiles and proofs
//
// Both read one JSON document on stdin and write one on stdout. Hashes, tile
// data and proof elements are standard base64. Tiles are keyed by their C2SP
// tlog-tiles path ("tile/0/000.p/7"); Go's own paths carry the tile height
// ("tile/8/0/000.p/7") and name bundles "data", and the mapping between the
// two is itself checked. Any failure exits 1 with the reason on stderr.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8

type inclusionCase struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Leaf  string   `json:"leaf"`
	Root  string   `json:"root"`
	Proof []string `json:"proof"`
}

type consistencyCase struct {
	Size1 int64    `json:"size1"`
	Size2 int64    `json:"size2"`
	Root1 string   `json:"root1"`
	Root2 string   `json:"root2"`
	Proof []string `json:"proof"`
}

// checkInput is what the Python side produced for one log.
type checkInput struct {
	Vkey        string            `json:"vkey"`
	Checkpoint  string            `json:"checkpoint"` // signed note
	Origin      string            `json:"origin"`
	Entries     []string          `json:"entries"` // every log entry, in order
	Tiles       map[string]string `json:"tiles"`   // C2SP path -> data, for the checkpoint size
	Bundles     map[string]string `json:"bundles"` // C2SP path -> entry bundle
	Inclusion   []inclusionCase   `json:"inclusion"`
	Consistency []consistencyCase `json:"consistency"`
}

type produceInput struct {
	Name        string     `json:"name"`
	Origin      string     `json:"origin"`
	Entries     []string   `json:"entries"`
	Inclusion   [][2]int64 `json:"inclusion"`   // (index, size)
	Consistency [][2]int64 `json:"consistency"` // (size1, size2)
}

type produceOutput struct {
	Vkey        string            `json:"vkey"`
	Checkpoint  string            `json:"checkpoint"`
	Roots       map[string]string `json:"roots"` // size -> tree hash, every size 0..n
	Tiles       map[string]string `json:"tiles"` // C2SP path -> data, for size n
	Inclusion   []inclusionCase   `json:"inclusion"`
	Consistency []consistencyCase `json:"consistency"`
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: conformance check|produce < input.json")
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	var out any
	switch os.Args[1] {
	case "check":
		var input checkInput
		mustDecode(in, &input)
		out = check(input)
	case "produce":
		var input produceInput
		mustDecode(in, &input)
		out = produce(input)
	default:
		fail("unknown command %q", os.Args[1])
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(out); err != nil {
		fail("writing output: %v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "conformance: "+format+"\n", args...)
	os.Exit(1)
}

func mustDecode(data []byte, v any) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail("decoding input: %v", err)
	}
}

func b64(s string) []byte {
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		fail("bad base64 %q: %v", s, err)
	}
	return data
}

func hash(s string) tlog.Hash {
	data := b64(s)
	if len(data) != tlog.HashSize {
		fail("hash of %d bytes", len(data))
	}
	var h tlog.Hash
	copy(h[:], data)
	return h
}

func hashes(list []string) []tlog.Hash {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		out[i] = hash(s)
	}
	return out
}

func enc(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

func encAll(list []tlog.Hash) []string {
	out := make([]string, len(list))
	for i, h := range list {
		out[i] = enc(h)
	}
	return out
}

// c2spPath turns Go's tile path into the C2SP one: drop the height, "data" -> "entries".
func c2spPath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", tileHeight))
	if t.L == -1 {
		p = "entries/" + strings.TrimPrefix(p, "data/")
	}
	return "tile/" + p
}

// goTile parses a C2SP path with Go's parser, and checks the mapping back.
func goTile(path string) tlog.Tile {
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok {
		fail("not a tile path: %q", path)
	}
	if after, isBundle := strings.CutPrefix(rest, "entries/"); isBundle {
		rest = "data/" + after
	}
	t, err := tlog.ParseTilePath(fmt.Sprintf("tile/%d/%s", tileHeight, rest))
	if err != nil {
		fail("Go cannot parse %q: %v", path, err)
	}
	if c2spPath(t) != path {
		fail("path %q maps back to %q", path, c2spPath(t))
	}
	return t
}

// storedHashes computes Go's own stored hashes for the entries, independently of our tiles.
func storedHashes(entries [][]byte) tlog.HashReaderFunc {
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if x < 0 || x >= int64(len(stored)) {
				return nil, fmt.Errorf("stored hash %d not available", x)
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	for n, entry := range entries {
		add, err := tlog.StoredHashes(int64(n), entry, reader)
		if err != nil {
			fail("StoredHashes(%d): %v", n, err)
		}
		stored = append(stored, add...)
	}
	return reader
}

// mapTiles serves tiles from a path -> data map, as a tlog-tiles client would fetch them.
type mapTiles map[string][]byte

func (m mapTiles) Height() int { return tileHeight }

func (m mapTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, ok := m[c2spPath(t)]
		if !ok {
			return nil, fmt.Errorf("tile %s not provided", c2spPath(t))
		}
		out[i] = data
	}
	return out, nil
}

func (m mapTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func parseCheckpoint(text string) (origin string, size int64, root tlog.Hash) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		fail("checkpoint has fewer than 3 lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		fail("bad checkpoint size %q", lines[1])
	}
	return lines[0], size, hash(lines[2])
}

func check(in checkInput) map[string]any {
	// (a) The signed checkpoint, with our vkey, through Go's note.Open.
	verifier, err := note.NewVerifier(in.Vkey)
	if err != nil {
		fail("NewVerifier(%q): %v", in.Vkey, err)
	}
	n, err := note.Open([]byte(in.Checkpoint), note.VerifierList(verifier))
	if err != nil {
		fail("note.Open: %v", err)
	}
	origin, size, root := parseCheckpoint(n.Text)
	if origin != in.Origin {
		fail("checkpoint origin %q, want %q", origin, in.Origin)
	}
	if size != int64(len(in.Entries)) {
		fail("checkpoint size %d, but %d entries", size, len(in.Entries))
	}

	// (b) Go's own tree over the entries must have the signed root.
	entries := make([][]byte, len(in.Entries))
	for i, e := range in.Entries {
		entries[i] = b64(e)
	}
	own := storedHashes(entries)
	th, err := tlog.TreeHash(size, own)
	if err != nil || th != root {
		fail("Go's tree hash of the entries is %v (%v), checkpoint says %v", th, err, root)
	}

	// Every tile and bundle Go would publish for this size must be exactly ours.
	tiles := mapTiles{}
	for path, data := range in.Tiles {
		goTile(path)
		tiles[path] = b64(data)
	}
	want := map[string]bool{}
	for _, t := range tlog.NewTiles(tileHeight, 0, size) {
		path := c2spPath(t)
		want[path] = true
		data, err := tlog.ReadTileData(t, own)
		if err != nil {
			fail("ReadTileData(%s): %v", path, err)
		}
		if !bytes.Equal(data, tiles[path]) {
			fail("tile %s differs from Go's", path)
		}
		// HashFromTile: each hash in our tile is the stored hash Go expects.
		for i := int64(0); i < int64(t.W); i++ {
			index := tlog.StoredHashIndex(t.L*t.H, t.N<<uint(t.H)+i)
			h, err := tlog.HashFromTile(t, tiles[path], index)
			expect, _ := own.ReadHashes([]int64{index})
			if err != nil || h != expect[0] {
				fail("HashFromTile(%s, %d) = %v, %v", path, index, h, err)
			}
		}
		// Bundles: the same coordinates at "level -1"; entries hash to the level-0 tile.
		if t.L == 0 {
			bt := t
			bt.L = -1
			bundlePath := c2spPath(bt)
			want[bundlePath] = true
			bundle := b64(in.Bundles[bundlePath])
			var recs []tlog.Hash
			for len(bundle) > 0 {
				if len(bundle) < 2 {
					fail("bundle %s truncated", bundlePath)
				}
				size := int(bundle[0])<<8 | int(bundle[1])
				if len(bundle) < 2+size {
					fail("bundle %s truncated", bundlePath)
				}
				recs = append(recs, tlog.RecordHash(bundle[2:2+size]))
				bundle = bundle[2+size:]
			}
			if len(recs) != t.W {
				fail("bundle %s holds %d entries, want %d", bundlePath, len(recs), t.W)
			}
			for i, rh := range recs {
				if !bytes.Equal(rh[:], tiles[path][i*tlog.HashSize:(i+1)*tlog.HashSize]) {
					fail("bundle %s entry %d does not hash to its tile", bundlePath, i)
				}
			}
		}
	}
	for path := range in.Tiles {
		if !want[path] {
			fail("tile %s is not one Go would publish at size %d", path, size)
		}
	}
	for path := range in.Bundles {
		if !want[path] {
			fail("bundle %s is not one Go would publish at size %d", path, size)
		}
	}

	// Our tiles, read through Go's authenticating TileHashReader, give the same root.
	tiled := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, tiles)
	if th, err := tlog.TreeHash(size, tiled); err != nil || th != root {
		fail("TreeHash over our tiles: %v, %v", th, err)
	}

	// (c) Our proofs check with Go's CheckRecord / CheckTree, and equal Go's own.
	for _, c := range in.Inclusion {
		proof := hashes(c.Proof)
		if err := tlog.CheckRecord(proof, c.Size, hash(c.Root), c.Index, hash(c.Leaf)); err != nil {
			fail("CheckRecord(index %d, size %d): %v", c.Index, c.Size, err)
		}
		goProof, err := tlog.ProveRecord(c.Size, c.Index, tiled)
		if err != nil || !equal(goProof, proof) {
			fail("ProveRecord(%d, %d) differs from ours (%v)", c.Size, c.Index, err)
		}
	}
	for _, c := range in.Consistency {
		proof := hashes(c.Proof)
		if err := tlog.CheckTree(proof, c.Size2, hash(c.Root2), c.Size1, hash(c.Root1)); err != nil {
			fail("CheckTree(%d -> %d): %v", c.Size1, c.Size2, err)
		}
		goProof, err := tlog.ProveTree(c.Size2, c.Size1, tiled)
		if err != nil || !equal(goProof, proof) {
			fail("ProveTree(%d, %d) differs from ours (%v)", c.Size2, c.Size1, err)
		}
	}
	return map[string]any{
		"ok":          true,
		"size":        size,
		"tiles":       len(in.Tiles),
		"bundles":     len(in.Bundles),
		"inclusion":   len(in.Inclusion),
		"consistency": len(in.Consistency),
	}
}

func equal(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func produce(in produceInput) produceOutput {
	entries := make([][]byte, len(in.Entries))
	for i, e := range in.Entries {
		entries[i] = b64(e)
	}
	size := int64(len(entries))
	own := storedHashes(entries)
	out := produceOutput{Roots: map[string]string{}, Tiles: map[string]string{}}
	for n := int64(0); n <= size; n++ {
		th, err := tlog.TreeHash(n, own)
		if err != nil {
			fail("TreeHash(%d): %v", n, err)
		}
		out.Roots[strconv.FormatInt(n, 10)] = enc(th)
	}
	for _, t := range tlog.NewTiles(tileHeight, 0, size) {
		data, err := tlog.ReadTileData(t, own)
		if err != nil {
			fail("ReadTileData: %v", err)
		}
		out.Tiles[c2spPath(t)] = base64.StdEncoding.EncodeToString(data)
	}
	root := hash(out.Roots[strconv.FormatInt(size, 10)])
	for _, c := range in.Inclusion {
		proof, err := tlog.ProveRecord(c[1], c[0], own)
		if err != nil {
			fail("ProveRecord: %v", err)
		}
		leaf := tlog.RecordHash(entries[c[0]])
		out.Inclusion = append(out.Inclusion, inclusionCase{
			Index: c[0], Size: c[1], Leaf: enc(leaf),
			Root: out.Roots[strconv.FormatInt(c[1], 10)], Proof: encAll(proof),
		})
	}
	for _, c := range in.Consistency {
		proof, err := tlog.ProveTree(c[1], c[0], own)
		if err != nil {
			fail("ProveTree: %v", err)
		}
		out.Consistency = append(out.Consistency, consistencyCase{
			Size1: c[0], Size2: c[1],
			Root1: out.Roots[strconv.FormatInt(c[0], 10)],
			Root2: out.Roots[strconv.FormatInt(c[1], 10)], Proof: encAll(proof),
		})
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, in.Name)
	if err != nil {
		fail("GenerateKey: %v", err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		fail("NewSigner: %v", err)
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", in.Origin, size, enc(root))
	msg, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		fail("Sign: %v", err)
	}
	out.Vkey = vkey
	out.Checkpoint = string(msg)
	return out
}
