// Command kafkaload publishes the sealer benchmark's audit events straight to Kafka.
//
// It exists because the Python producer library spends about 25 µs of CPU per event: on the
// two-core benchmark machine, offering 30k events/s from Python takes most of a core away from
// the sealers being measured, and 50k events/s cannot be offered at all. This client sends the
// same records (value, key, no headers) for a few µs each.
//
// Event i (for i in start..start+count-1) is
//
//	{"message": "<tag> <i>", "actor": "user-<i%97>", "action": "read",
//	 "target": "doc-<i%1013>", "tenant_id": "tenant-<i%500>"}
//
// wrapped in the canonical envelope of docs/kafka-messages.md, with received_at the UTC time the
// record is built, and keyed by its tenant_id, as auditlog.producer.AuditProducer would send it.
// main_test.go pins the bytes to vectors produced by auditlog.envelope.Envelope.
//
// With -events FILE, event i is instead line i mod n of a corpus of realistic events written by
// bench/corpus.py ({"key": tenant_id or null, "head": ..., "tail": ...}, the event's canonical
// JSON cut inside its message string), with "<tag> <i> " put at the start of its message: the
// envelope is {"event":head<tag> <i> tail,"received_at":"..."}, canonical as it stands, keyed by
// the event's tenant_id (no key without one).
//
// With -rate R the records are due at i/R seconds after the start and go out in slices every
// -tick, without waiting for acknowledgements (the client buffers at most -buffer records, then
// blocks). The result is one JSON line on stdout; the exit status is 1 when any record failed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string the way Python's json.dumps(ensure_ascii=False)
// spells it: only '"', '\\' and control characters are escaped, with the short escapes Python
// uses and lowercase \u00XX for the rest; everything else, U+2028/U+2029 and DEL included, is
// copied as UTF-8. s must be valid UTF-8 (Python strings cannot hold anything else).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			dst = append(dst, '\\', '"')
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c == '\b':
			dst = append(dst, '\\', 'b')
		case c == '\f':
			dst = append(dst, '\\', 'f')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// appendReceivedAt appends t as YYYY-MM-DDTHH:MM:SS.ffffffZ in UTC, the one spelling the sealer
// accepts (auditlog.envelope.format_received_at); digits past the microsecond are dropped.
func appendReceivedAt(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z")
}

// encoder builds the envelopes of one tag's events.
type encoder struct {
	// message is the JSON string of "<tag> " without its closing quote: the number that
	// follows needs no escaping, so the tag is escaped once, not per event.
	message []byte
}

func newEncoder(tag string) encoder {
	s := appendJSONString(nil, tag+" ")
	return encoder{message: s[:len(s)-1]}
}

// appendEnvelope appends the canonical envelope of event i. Keys are written in sorted order
// (action, actor, message, target, tenant_id; then event, received_at), as sort_keys=True
// orders them; the fixed parts are ASCII without anything to escape.
func (e encoder) appendEnvelope(dst []byte, i int64, receivedAt time.Time) []byte {
	dst = append(dst, `{"event":{"action":"read","actor":"user-`...)
	dst = strconv.AppendInt(dst, i%97, 10)
	dst = append(dst, `","message":`...)
	dst = append(dst, e.message...)
	dst = strconv.AppendInt(dst, i, 10)
	dst = append(dst, `","target":"doc-`...)
	dst = strconv.AppendInt(dst, i%1013, 10)
	dst = append(dst, `","tenant_id":"`...)
	dst = appendTenant(dst, i)
	dst = append(dst, `"},"received_at":"`...)
	dst = appendReceivedAt(dst, receivedAt)
	return append(dst, `"}`...)
}

// appendTenant appends event i's tenant_id, which is also its record key (auditlog.kafka.record_key).
func appendTenant(dst []byte, i int64) []byte {
	return strconv.AppendInt(append(dst, "tenant-"...), i%500, 10)
}

// record builds event i's Kafka record. Each record gets its own backing array: the client
// holds the value until the broker acknowledged it.
func (e encoder) record(i int64, now time.Time) *kgo.Record {
	buf := e.appendEnvelope(make([]byte, 0, 160+len(e.message)), i, now)
	return &kgo.Record{Key: appendTenant(make([]byte, 0, 12), i), Value: buf}
}

// corpusLine is one realistic event of bench/corpus.py's file.
type corpusLine struct {
	Key  *string `json:"key"`
	Head string  `json:"head"`
	Tail string  `json:"tail"`
}

// corpusEncoder builds event i from line i mod len(lines).
type corpusEncoder struct {
	prefix []byte // "<tag> ", needing no escaping (checked by parseFlags)
	lines  []corpusLine
}

func loadCorpus(path string, tag string) (corpusEncoder, error) {
	f, err := os.Open(path)
	if err != nil {
		return corpusEncoder{}, err
	}
	defer f.Close()
	var lines []corpusLine
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		var line corpusLine
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
			return corpusEncoder{}, fmt.Errorf("%s line %d: %w", path, len(lines)+1, err)
		}
		lines = append(lines, line)
	}
	if err := scanner.Err(); err != nil {
		return corpusEncoder{}, err
	}
	if len(lines) == 0 {
		return corpusEncoder{}, fmt.Errorf("%s holds no events", path)
	}
	return corpusEncoder{prefix: []byte(tag + " "), lines: lines}, nil
}

func (e corpusEncoder) record(i int64, now time.Time) *kgo.Record {
	line := &e.lines[i%int64(len(e.lines))]
	buf := make([]byte, 0, 64+len(line.Head)+len(line.Tail)+len(e.prefix))
	buf = append(buf, `{"event":`...)
	buf = append(buf, line.Head...)
	buf = append(buf, e.prefix...)
	buf = strconv.AppendInt(buf, i, 10)
	buf = append(buf, ' ')
	buf = append(buf, line.Tail...)
	buf = append(buf, `,"received_at":"`...)
	buf = appendReceivedAt(buf, now)
	buf = append(buf, `"}`...)
	r := &kgo.Record{Value: buf}
	if line.Key != nil {
		r.Key = []byte(*line.Key)
	}
	return r
}

type result struct {
	Produced int64   `json:"produced"`
	Errors   int64   `json:"errors"`
	Seconds  float64 `json:"seconds"` // first send to last acknowledgement
	Rate     float64 `json:"rate"`    // produced / seconds
	// OfferSeconds is when the last record was handed to the client: in paced mode, a value
	// well above count/rate means the generator (or the client's buffer) could not keep up.
	OfferSeconds float64 `json:"offer_seconds"`
	OfferedRate  float64 `json:"offered_rate"`
	FirstError   string  `json:"first_error,omitempty"`
}

type config struct {
	brokers  string
	topic    string
	count    int64
	tag      string
	rate     float64
	start    int64
	tick     time.Duration
	buffer   int
	linger   time.Duration
	timeout  time.Duration
	maxBatch int
	events   string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("kafkaload", flag.ContinueOnError)
	fs.StringVar(&c.brokers, "brokers", "127.0.0.1:19092", "comma-separated bootstrap brokers")
	fs.StringVar(&c.topic, "topic", "audit.events", "topic to produce to")
	fs.Int64Var(&c.count, "count", 1000, "number of events")
	fs.StringVar(&c.tag, "tag", "kafkaload", "message prefix: event i's message is \"<tag> <i>\"")
	fs.Float64Var(&c.rate, "rate", 0, "events/s to offer (0: as fast as possible)")
	fs.Int64Var(&c.start, "start", 0, "first event number i")
	fs.DurationVar(&c.tick, "tick", 5*time.Millisecond, "paced mode: interval between slices")
	fs.IntVar(&c.buffer, "buffer", 100_000, "records buffered unacknowledged before sends block")
	fs.DurationVar(&c.linger, "linger", 2*time.Millisecond, "producer linger")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "delivery timeout per record")
	fs.IntVar(&c.maxBatch, "max-batch-bytes", 512*1024, "producer batch size limit")
	fs.StringVar(&c.events, "events", "", "corpus of realistic events (bench/corpus.py); default: templated events")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	case c.count < 0 || c.start < 0:
		return c, errors.New("-count and -start must not be negative")
	case c.rate < 0:
		return c, errors.New("-rate must not be negative")
	case c.tick <= 0:
		return c, errors.New("-tick must be positive")
	case !utf8.ValidString(c.tag):
		return c, errors.New("-tag must be valid UTF-8")
	case c.events != "" && !plainTag(c.tag):
		return c, errors.New("-tag must be 1-64 of [A-Za-z0-9._:/-] with -events")
	}
	return c, nil
}

// plainTag says whether tag needs no JSON escaping, so it can go into a corpus line's message
// as raw bytes (bench/corpus.py checks the same pattern).
func plainTag(tag string) bool {
	if len(tag) == 0 || len(tag) > 64 {
		return false
	}
	for _, c := range tag {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.ContainsRune("._:/-", c)
		if !ok {
			return false
		}
	}
	return true
}

type recordMaker interface {
	record(i int64, now time.Time) *kgo.Record
}

func run(c config) (result, error) {
	// The settings of auditlog.kafka.PRODUCER_DEFAULTS. Idempotence is franz-go's default;
	// StickyKeyPartitioner(nil) hashes keys with murmur2 as Kafka's (and aiokafka's) default
	// partitioner does, so a tenant lands on the partition the Python producer would choose.
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(c.brokers, ",")...),
		kgo.DefaultProduceTopic(c.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(c.linger),
		kgo.ProducerBatchMaxBytes(int32(c.maxBatch)),
		kgo.ProduceRequestTimeout(10*time.Second),
		kgo.RecordDeliveryTimeout(c.timeout),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.MaxBufferedRecords(c.buffer),
	)
	if err != nil {
		return result{}, err
	}
	defer client.Close()

	var produced, failed atomic.Int64
	var mu sync.Mutex
	var firstMsg string
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			if failed.Add(1) == 1 {
				mu.Lock()
				firstMsg = err.Error()
				mu.Unlock()
			}
			return
		}
		produced.Add(1)
	}
	var enc recordMaker = newEncoder(c.tag)
	if c.events != "" {
		corpus, err := loadCorpus(c.events, c.tag)
		if err != nil {
			return result{}, err
		}
		enc = corpus
	}

	ctx := context.Background()
	began := time.Now()
	end := c.start + c.count
	if c.rate == 0 {
		for i := c.start; i < end; i++ {
			client.Produce(ctx, enc.record(i, time.Now()), done)
		}
	} else {
		ticker := time.NewTicker(c.tick)
		next := c.start
		for next < end {
			// Everything due by now goes out, so a late tick catches up instead of lowering the
			// rate; Produce blocks only when -buffer records are unacknowledged.
			due := min(end, c.start+int64(time.Since(began).Seconds()*c.rate)+1)
			for ; next < due; next++ {
				client.Produce(ctx, enc.record(next, time.Now()), done)
			}
			if next < end {
				<-ticker.C
			}
		}
		ticker.Stop()
	}
	offered := time.Since(began)
	if err := client.Flush(ctx); err != nil {
		return result{}, err
	}
	elapsed := time.Since(began)
	r := result{
		Produced:     produced.Load(),
		Errors:       failed.Load(),
		Seconds:      elapsed.Seconds(),
		OfferSeconds: offered.Seconds(),
	}
	mu.Lock()
	r.FirstError = firstMsg
	mu.Unlock()
	if elapsed > 0 {
		r.Rate = float64(r.Produced) / elapsed.Seconds()
	}
	if offered > 0 {
		r.OfferedRate = float64(c.count) / offered.Seconds()
	}
	return r, nil
}

func main() {
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "kafkaload:", err)
		os.Exit(2)
	}
	r, err := run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafkaload:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	if r.Errors > 0 || r.Produced != c.count {
		os.Exit(1)
	}
}
