package main

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// The expected values were produced by the project's Python rule, for the bench's events:
//
//	.venv/bin/python -c 'from auditlog.envelope import Envelope, format_received_at; ...
//	    Envelope(event, format_received_at(dt)).canonical, record_key(envelope)'
//
// so they are json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False) bytes.
var vectors = []struct {
	tag        string
	i          int64
	receivedAt time.Time
	key        string
	value      string
}{
	{"prefill", 0, time.Date(2026, 11, 25, 22, 1, 2, 123456*1000, time.UTC), "tenant-0",
		`{"event":{"action":"read","actor":"user-0","message":"prefill 0","target":"doc-0","tenant_id":"tenant-0"},"received_at":"2026-11-25T22:01:02.123456Z"}`},
	{"live", 1, time.Date(2026, 1, 2, 3, 4, 5, 7*1000, time.UTC), "tenant-1",
		`{"event":{"action":"read","actor":"user-1","message":"live 1","target":"doc-1","tenant_id":"tenant-1"},"received_at":"2026-01-02T03:04:05.000007Z"}`},
	{"live", 96, time.Date(1999, 12, 31, 23, 59, 59, 999999*1000, time.UTC), "tenant-96",
		`{"event":{"action":"read","actor":"user-96","message":"live 96","target":"doc-96","tenant_id":"tenant-96"},"received_at":"1999-12-31T23:59:59.999999Z"}`},
	{"prefill", 97, time.Date(2026, 11, 25, 22, 1, 2, 0, time.UTC), "tenant-97",
		`{"event":{"action":"read","actor":"user-0","message":"prefill 97","target":"doc-97","tenant_id":"tenant-97"},"received_at":"2026-11-25T22:01:02.000000Z"}`},
	{"prefill", 1012, time.Date(2026, 11, 25, 22, 1, 2, 500000*1000, time.UTC), "tenant-12",
		`{"event":{"action":"read","actor":"user-42","message":"prefill 1012","target":"doc-1012","tenant_id":"tenant-12"},"received_at":"2026-11-25T22:01:02.500000Z"}`},
	{"live", 123456789, time.Date(2030, 6, 15, 12, 0, 0, 42*1000, time.UTC), "tenant-289",
		`{"event":{"action":"read","actor":"user-39","message":"live 123456789","target":"doc-453","tenant_id":"tenant-289"},"received_at":"2030-06-15T12:00:00.000042Z"}`},
	// A tag with everything Python escapes (and some things it does not: DEL, U+2028/2029,
	// non-ASCII, HTML characters), written as bytes.
	{"a\"b\\c\x0a\x0d\x09\x08\x0c\x00\x01\x1f\x7f \xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 \xe2\x80\xa8\xe2\x80\xa9 </script>&", 503, time.Date(2026, 11, 25, 22, 1, 2, 1*1000, time.UTC), "tenant-3",
		"{\"event\":{\"action\":\"read\",\"actor\":\"user-18\",\"message\":\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0000\\u0001\\u001f\x7f \xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 \xe2\x80\xa8\xe2\x80\xa9 </script>& 503\",\"target\":\"doc-503\",\"tenant_id\":\"tenant-3\"},\"received_at\":\"2026-11-25T22:01:02.000001Z\"}"},
}

func TestRecordMatchesPythonProducer(t *testing.T) {
	for _, v := range vectors {
		r := newEncoder(v.tag).record(v.i, v.receivedAt)
		if string(r.Value) != v.value {
			t.Errorf("value of %q %d:\n got %s\nwant %s", v.tag, v.i, r.Value, v.value)
		}
		if string(r.Key) != v.key {
			t.Errorf("key of %q %d: got %q, want %q", v.tag, v.i, r.Key, v.key)
		}
		if len(r.Headers) != 0 || r.Topic != "" {
			t.Errorf("record of %q %d has headers or a topic of its own: %+v", v.tag, v.i, r)
		}
		if !json.Valid(r.Value) {
			t.Errorf("value of %q %d is not valid JSON", v.tag, v.i)
		}
	}
}

// received_at has microsecond precision in UTC whatever the clock's zone and resolution:
// digits past the microsecond are dropped, as Python's datetime never has them.
func TestReceivedAt(t *testing.T) {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(2026, 11, 25, 22, 1, 2, 123456789, time.UTC), "2026-11-25T22:01:02.123456Z"},
		{time.Date(2026, 11, 26, 3, 31, 2, 999999999, zone), "2026-11-25T22:01:02.999999Z"},
		{time.Date(2026, 11, 25, 22, 1, 2, 999, time.UTC), "2026-11-25T22:01:02.000000Z"},
	} {
		if got := string(appendReceivedAt(nil, c.t)); got != c.want {
			t.Errorf("appendReceivedAt(%v) = %s, want %s", c.t, got, c.want)
		}
	}
}

// Every control character gets the escape Python writes; every other byte is copied.
func TestJSONStringEscapes(t *testing.T) {
	short := map[byte]string{'\b': `\b`, '\t': `\t`, '\n': `\n`, '\f': `\f`, '\r': `\r`, '"': `\"`, '\\': `\\`}
	for c := 0; c < 0x80; c++ {
		got := appendJSONString(nil, string(rune(c)))
		want, ok := short[byte(c)]
		switch {
		case ok:
		case c < 0x20:
			want = `\u00` + string(hexDigits[c>>4]) + string(hexDigits[c&0xf])
		default:
			want = string(rune(c))
		}
		if !bytes.Equal(got, []byte(`"`+want+`"`)) {
			t.Errorf("byte %#x: got %s, want %q", c, got, `"`+want+`"`)
		}
	}
}

func BenchmarkRecord(b *testing.B) {
	enc := newEncoder("live")
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		enc.record(int64(i), now)
	}
}

// A corpus line of bench/corpus.py and the record bench/corpus.py's record_value builds from it
// (the same splice, checked in Python against auditlog.core.envelope.Envelope by
// tests/unit/test_bench_corpus.py), for tag "vec", event 7:
//
//	.venv/bin/python -c 'from bench.corpus import corpus_line, record_value; ...'
var corpusVector = struct {
	line  string
	key   string
	value string
}{
	"{\"key\": \"tenant-grux-3\", \"head\": \"{\\\"action\\\":\\\"object_read\\\",\\\"actor\\\":\\\"weckzaimlain.hukouckdril@soylent.co.uk\\\",\\\"message\\\":\\\"\", \"tail\": \"Key 046c63ddd3f89e094ffe45f86a623c48 expired for service account ceamgrurdrat@vockpren-300.iam. caf\u00e9 \u2028 \\\\\\\"q\\\\\\\" \\\\\\\\ tab\\\\t\\\",\\\"source\\\":\\\"215.158.176.139\\\",\\\"status\\\":\\\"success\\\",\\\"target\\\":\\\"projects/ceastfrittreast-581/clusters/brondtendbres/zesmet.tar.gz\\\",\\\"tenant_id\\\":\\\"tenant-grux-3\\\",\\\"timestamp\\\":\\\"2026-12-04T21:01:46.130102Z\\\"}\"}",
	"tenant-grux-3",
	"{\"event\":{\"action\":\"object_read\",\"actor\":\"weckzaimlain.hukouckdril@soylent.co.uk\",\"message\":\"vec 7 Key 046c63ddd3f89e094ffe45f86a623c48 expired for service account ceamgrurdrat@vockpren-300.iam. caf\u00e9 \u2028 \\\"q\\\" \\\\ tab\\t\",\"source\":\"215.158.176.139\",\"status\":\"success\",\"target\":\"projects/ceastfrittreast-581/clusters/brondtendbres/zesmet.tar.gz\",\"tenant_id\":\"tenant-grux-3\",\"timestamp\":\"2026-12-04T21:01:46.130102Z\"},\"received_at\":\"2026-12-04T21:00:00.123456Z\"}",
}

func TestCorpusRecordMatchesPythonSplice(t *testing.T) {
	path := t.TempDir() + "/corpus.jsonl"
	if err := os.WriteFile(path, []byte(corpusVector.line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	enc, err := loadCorpus(path, "vec")
	if err != nil {
		t.Fatal(err)
	}
	r := enc.record(7, time.Date(2026, 12, 4, 21, 0, 0, 123456*1000, time.UTC))
	if string(r.Value) != corpusVector.value {
		t.Errorf("value:\n got %s\nwant %s", r.Value, corpusVector.value)
	}
	if string(r.Key) != corpusVector.key {
		t.Errorf("key: got %q, want %q", r.Key, corpusVector.key)
	}
	// Line i mod n: event 8 of a one-line corpus is the same event with another number.
	if !bytes.Contains(enc.record(8, time.Now()).Value, []byte(`"message":"vec 8 `)) {
		t.Error("event 8 does not carry its own number")
	}
}

func TestCorpusTagsMustNeedNoEscaping(t *testing.T) {
	for _, tag := range []string{"", "a b", `a"b`, "a\\b", "\u00e9"} {
		if _, err := parseFlags([]string{"-events", "x", "-tag", tag}); err == nil {
			t.Errorf("tag %q accepted with -events", tag)
		}
	}
	if _, err := parseFlags([]string{"-events", "x", "-tag", "live"}); err != nil {
		t.Errorf("tag live refused: %v", err)
	}
}
