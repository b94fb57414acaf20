// Command race offers the same open-loop load of realistic events to Tessera's POSIX
// conformance server or to auditlog's ingest API, for bench/bench_race.py.
//
// Entries are the JSON events of -corpus (one per line), each with its "timestamp" set to the
// moment it is due (RFC 3339, UTC, microseconds), so that auditlog's sealed latency can be read
// from the database afterwards (the checkpoint that sealed it minus its due time), and Tessera's
// entries are the same bytes. Request i is due at start + i/rate whatever the server does,
// start being 200 ms after every entry was built; latencies run from the due time (no
// coordinated omission).
//
//   - -target tessera: POST {url}/add with the entry; the answer is its index. A poller reads
//     {url}/checkpoint every 10 ms: an entry is integrated when a checkpoint's size passes its
//     index, and its integration latency runs from its due time to that checkpoint's sighting.
//   - -target auditlog: POST {url}/v1/log ({"event": ...}), or {url}/v2/log with -bulk N events
//     a request (the rate counts events), with -token; the acknowledgement latency is reported
//     here, the sealed latency by bench_race.py from the database.
//
// The result is one JSON line on stdout.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Target        string             `json:"target"`
	Rate          float64            `json:"rate"`
	Bulk          int                `json:"bulk"`
	Seconds       float64            `json:"seconds"`
	Events        int                `json:"events"`
	Accepted      int                `json:"accepted"` // events of the requests answered 2xx
	Requests      int                `json:"requests"`
	Errors        int                `json:"errors"`
	Statuses      map[string]int     `json:"statuses"`
	FirstError    string             `json:"first_error,omitempty"`
	Backlog       int                `json:"backlog"`
	EntryBytes    float64            `json:"entry_bytes_mean"`
	Ack           map[string]float64 `json:"ack_ms"`
	Integrated    map[string]float64 `json:"integrated_ms,omitempty"`
	NotIntegrated int                `json:"not_integrated,omitempty"`
	StartedUnixUs int64              `json:"started_unix_us"`
	BuiltUnixUs   int64              `json:"built_unix_us"` // when the entries were ready
}

func percentiles(values []time.Duration) map[string]float64 {
	out := map[string]float64{}
	if len(values) == 0 {
		return out
	}
	slices.Sort(values)
	at := func(p float64) float64 {
		d := values[int(math.Round(p/100*float64(len(values)-1)))]
		return math.Round(float64(d)/1e3) / 1e3
	}
	for _, p := range []float64{50, 90, 95, 99, 99.9} {
		out["p"+strings.ReplaceAll(strconv.FormatFloat(p, 'f', -1, 64), ".", "_")] = at(p)
	}
	out["max"] = at(100)
	return out
}

func readCorpus(path string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var events []map[string]any
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		var e map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &e); err != nil {
			return nil, err
		}
		events = append(events, e)
	}
	return events, scanner.Err()
}

type job struct {
	due    time.Time
	first  int // index of the first event of the request
	bodies [][]byte
	stamps []int // where each body's timestamp value starts
}

// The timestamp each entry is marshalled with, replaced by its due time when it is sent: the
// entries are built before the schedule starts (hundreds of milliseconds for a long run at a
// high rate, which must not be counted as latency), and their due times are known only then.
const (
	timestampLayout = "2006-01-02T15:04:05.000000Z"
	placeholder     = "0000-00-00T00:00:00.000000Z"
)

var placeholderField = []byte(`"timestamp":"` + placeholder + `"`)

// stamp writes j's due time into each of its bodies, in place (each job is sent once).
func (j *job) stamp() {
	due := j.due.UTC().Format(timestampLayout)
	for k, b := range j.bodies {
		copy(b[j.stamps[k]:], due)
	}
}

func main() {
	target := flag.String("target", "", "tessera or auditlog")
	url := flag.String("url", "", "base URL of the server")
	token := flag.String("token", "", "auditlog: a token with the log scope")
	corpus := flag.String("corpus", "", "JSON lines, one event each")
	rate := flag.Float64("rate", 1000, "events per second offered")
	bulk := flag.Int("bulk", 1, "auditlog: events per request (/v2/log when more than 1)")
	duration := flag.Duration("duration", 20*time.Second, "how long the load is offered")
	workers := flag.Int("workers", 512, "most requests in flight at once")
	settle := flag.Duration("settle", 15*time.Second, "tessera: how long to wait for the last integrations")
	flag.Parse()
	if (*target != "tessera" && *target != "auditlog") || *url == "" || *corpus == "" {
		fmt.Fprintln(os.Stderr, "race: -target tessera|auditlog, -url and -corpus are required")
		os.Exit(2)
	}
	if *target == "tessera" {
		*bulk = 1
	}
	events, err := readCorpus(*corpus)
	if err != nil || len(events) == 0 {
		fmt.Fprintln(os.Stderr, "race: reading the corpus:", err)
		os.Exit(2)
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        *workers,
		MaxIdleConnsPerHost: *workers,
		MaxConnsPerHost:     *workers,
		DisableCompression:  true,
		// Under uvicorn's 5-s keep-alive: a connection the server closes while a request is
		// being written on it fails that request ("connection reset by peer"), which is the
		// client's race, not the server's refusal.
		IdleConnTimeout: 4 * time.Second,
	}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	total := int(*rate * duration.Seconds())
	requests := (total + *bulk - 1) / *bulk
	interval := time.Duration(float64(time.Second) * float64(*bulk) / *rate)

	// Entries are built ahead, so building them is not in the measured path; the schedule
	// starts once they are (building 250,000 took ~0.9 s, which a start fixed before it had
	// counted as the first requests' latency).
	jobs := make([]job, requests)
	var entryBytes int
	for r := range requests {
		j := job{first: r * *bulk}
		for k := 0; k < *bulk && j.first+k < total; k++ {
			e := events[(j.first+k)%len(events)]
			e["timestamp"] = placeholder
			b, _ := json.Marshal(e)
			at := bytes.Index(b, placeholderField)
			if at < 0 {
				fmt.Fprintln(os.Stderr, "race: an entry's timestamp was not marshalled as expected")
				os.Exit(2)
			}
			entryBytes += len(b)
			j.bodies = append(j.bodies, b)
			j.stamps = append(j.stamps, at+len(`"timestamp":"`))
		}
		jobs[r] = j
	}
	built := time.Now()
	began := built.Add(200 * time.Millisecond)
	for r := range jobs {
		jobs[r].due = began.Add(time.Duration(r) * interval)
	}
	res := result{Target: *target, Rate: *rate, Bulk: *bulk, Statuses: map[string]int{}, StartedUnixUs: began.UnixMicro(), BuiltUnixUs: built.UnixMicro()}
	res.EntryBytes = math.Round(float64(entryBytes) / float64(total))

	var mu sync.Mutex
	acks := make([]time.Duration, 0, requests)
	indexDue := map[uint64]time.Time{}
	var integratedSize atomic.Uint64
	sightings := []struct {
		size uint64
		at   time.Time
	}{}
	stopPolling := make(chan struct{})
	var pollWG sync.WaitGroup
	if *target == "tessera" {
		pollWG.Add(1)
		go func() {
			defer pollWG.Done()
			ticker := time.NewTicker(10 * time.Millisecond)
			defer ticker.Stop()
			for {
				select {
				case <-stopPolling:
					return
				case <-ticker.C:
				}
				resp, err := client.Get(*url + "/checkpoint")
				if err != nil {
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lines := strings.Split(string(body), "\n")
				if len(lines) < 2 {
					continue
				}
				size, err := strconv.ParseUint(lines[1], 10, 64)
				if err != nil || size <= integratedSize.Load() {
					continue
				}
				integratedSize.Store(size)
				mu.Lock()
				sightings = append(sightings, struct {
					size uint64
					at   time.Time
				}{size, time.Now()})
				mu.Unlock()
			}
		}()
	}

	queue := make(chan job, requests)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			for j := range queue {
				j.stamp()
				var req *http.Request
				switch {
				case *target == "tessera":
					req, _ = http.NewRequestWithContext(ctx, http.MethodPost, *url+"/add", bytes.NewReader(j.bodies[0]))
				case *bulk == 1:
					body := append(append([]byte(`{"event":`), j.bodies[0]...), '}')
					req, _ = http.NewRequestWithContext(ctx, http.MethodPost, *url+"/v1/log", bytes.NewReader(body))
				default:
					// /v2/log takes {"events": [{"event": {...}}, ...]}.
					body := []byte(`{"events":[`)
					for k, b := range j.bodies {
						if k > 0 {
							body = append(body, ',')
						}
						body = append(append(append(body, `{"event":`...), b...), '}')
					}
					body = append(body, `]}`...)
					req, _ = http.NewRequestWithContext(ctx, http.MethodPost, *url+"/v2/log", bytes.NewReader(body))
				}
				if *token != "" {
					req.Header.Set("Authorization", "Bearer "+*token)
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					res.Errors++
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				latency := time.Since(j.due)
				mu.Lock()
				res.Statuses[strconv.Itoa(resp.StatusCode)]++
				if resp.StatusCode/100 != 2 {
					res.Errors++
					if res.FirstError == "" {
						res.FirstError = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
					}
				} else {
					res.Accepted += len(j.bodies)
					acks = append(acks, latency)
					if *target == "tessera" {
						if idx, err := strconv.ParseUint(strings.TrimSpace(string(body)), 10, 64); err == nil {
							indexDue[idx] = j.due
						}
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, j := range jobs {
		if wait := time.Until(j.due); wait > 0 {
			time.Sleep(wait)
		}
		queue <- j
	}
	res.Backlog = len(queue)
	close(queue)
	wg.Wait()
	res.Seconds = math.Round(time.Since(began).Seconds()*1000) / 1000
	res.Requests = requests
	res.Events = total
	res.Ack = percentiles(acks)

	if *target == "tessera" {
		var highest uint64
		for idx := range indexDue {
			highest = max(highest, idx)
		}
		deadline := time.Now().Add(*settle)
		for integratedSize.Load() <= highest && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		close(stopPolling)
		pollWG.Wait()
		var integrated []time.Duration
		for idx, due := range indexDue {
			// The first checkpoint seen that covers idx.
			k, _ := slices.BinarySearchFunc(sightings, idx+1, func(s struct {
				size uint64
				at   time.Time
			}, want uint64) int {
				switch {
				case s.size < want:
					return -1
				case s.size > want:
					return 1
				}
				return 0
			})
			if k == len(sightings) {
				res.NotIntegrated++
				continue
			}
			integrated = append(integrated, sightings[k].at.Sub(due))
		}
		res.Integrated = percentiles(integrated)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}
