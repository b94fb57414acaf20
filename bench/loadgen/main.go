// Command loadgen is an HTTP load generator for the auditlog benchmarks.
//
// It exists because a Python client on the benchmark machine (two cores, shared with PostgreSQL
// and the service under test) takes about as much CPU as the server it measures; a Go client
// spends a few microseconds per request instead.
//
// Two modes:
//
//   - closed loop (-concurrency N): N workers, each sends its next request when the previous
//     answer arrived; the achieved rate is the service's capacity under that concurrency.
//   - open loop (-rate R): requests are due at fixed intervals of 1/R whatever the service does;
//     latency is measured from the due time, not from when a worker got round to sending, so a
//     stalled service shows up in the percentiles instead of silently lowering the offered load
//     (coordinated omission).
//
// The URL may contain {rand:N} placeholders, each replaced per request by a uniform integer in
// 0..N-1. The result is one JSON line on stdout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

type urlTemplate struct {
	literals []string // len(bounds)+1 pieces around the placeholders
	bounds   []uint64
}

var placeholder = regexp.MustCompile(`\{rand:([0-9]+)\}`)

func parseTemplate(raw string) (urlTemplate, error) {
	var t urlTemplate
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(raw, -1) {
		n, err := strconv.ParseUint(raw[m[2]:m[3]], 10, 64)
		if err != nil || n == 0 {
			return t, fmt.Errorf("bad placeholder %q: N must be a positive integer", raw[m[0]:m[1]])
		}
		t.literals = append(t.literals, raw[last:m[0]])
		t.bounds = append(t.bounds, n)
		last = m[1]
	}
	t.literals = append(t.literals, raw[last:])
	return t, nil
}

func (t urlTemplate) render(rng *rand.Rand, buf *strings.Builder) string {
	if len(t.bounds) == 0 {
		return t.literals[0]
	}
	buf.Reset()
	for i, n := range t.bounds {
		buf.WriteString(t.literals[i])
		buf.WriteString(strconv.FormatUint(rng.Uint64N(n), 10))
	}
	buf.WriteString(t.literals[len(t.literals)-1])
	return buf.String()
}

// tally is one worker's record; merged after the run, so workers never contend on a lock.
type tally struct {
	latencies []time.Duration // every answered request, 2xx or not
	non2xx    int
	errors    int
	statuses  map[int]int
	firstErr  string
}

type client struct {
	http     *http.Client
	template urlTemplate
	auth     string
}

// do sends one request and reads the whole body, so the connection is reused.
func (c *client) do(ctx context.Context, rng *rand.Rand, buf *strings.Builder) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.template.render(rng, buf), nil)
	if err != nil {
		return 0, err
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

func (t *tally) record(status int, err error, latency time.Duration, ctxDone bool) {
	switch {
	case err != nil:
		if ctxDone {
			return // cut off by the end of the run, not a failure of the service
		}
		t.errors++
		if t.firstErr == "" {
			t.firstErr = err.Error()
		}
	default:
		t.latencies = append(t.latencies, latency)
		t.statuses[status]++
		if status < 200 || status > 299 {
			t.non2xx++
		}
	}
}

func closedLoop(c *client, concurrency int, duration time.Duration, seed uint64) ([]*tally, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	tallies := make([]*tally, concurrency)
	var wg sync.WaitGroup
	began := time.Now()
	for w := range concurrency {
		t := &tally{statuses: map[int]int{}}
		tallies[w] = t
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			var buf strings.Builder
			for ctx.Err() == nil {
				start := time.Now()
				status, err := c.do(ctx, rng, &buf)
				t.record(status, err, time.Since(start), ctx.Err() != nil)
			}
		})
	}
	wg.Wait()
	return tallies, time.Since(began)
}

// openLoop offers `rate` requests per second for `duration`. Request i is due at began+i/rate;
// a pool of `workers` sends them. When every worker is busy, due requests wait in the queue and
// their latency (measured from the due time) includes that wait. Requests still queued when the
// schedule ends are sent all the same (their wait is the service's backlog) and reported as
// backlog: the service could not keep up with the offered rate.
func openLoop(c *client, rate float64, duration time.Duration, workers int, seed uint64) ([]*tally, time.Duration, int) {
	total := int(rate * duration.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	// Answers still pending this long after the last due time are abandoned (counted as errors).
	ctx, cancel := context.WithTimeout(context.Background(), duration+10*time.Second)
	defer cancel()
	due := make(chan time.Time, total)
	tallies := make([]*tally, workers)
	var wg sync.WaitGroup
	for w := range workers {
		t := &tally{statuses: map[int]int{}}
		tallies[w] = t
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			var buf strings.Builder
			for at := range due {
				status, err := c.do(ctx, rng, &buf)
				t.record(status, err, time.Since(at), false)
			}
		})
	}
	began := time.Now()
	for i := range total {
		at := began.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		due <- at
	}
	backlog := len(due)
	close(due)
	wg.Wait()
	return tallies, time.Since(began), backlog
}

type result struct {
	Mode        string         `json:"mode"`
	URL         string         `json:"url"`
	Concurrency int            `json:"concurrency,omitempty"`
	TargetRate  float64        `json:"target_rate,omitempty"`
	Workers     int            `json:"workers,omitempty"`
	Seconds     float64        `json:"seconds"`
	Requests    int            `json:"requests"`
	OK          int            `json:"ok"`
	Non2xx      int            `json:"non_2xx"`
	Errors      int            `json:"errors"`
	Backlog     int            `json:"backlog"`
	Statuses    map[string]int `json:"statuses"`
	FirstError  string         `json:"first_error,omitempty"`
	Rate        float64        `json:"rate"`
	OKRate      float64        `json:"ok_rate"`
	P50         float64        `json:"p50_ms"`
	P95         float64        `json:"p95_ms"`
	P99         float64        `json:"p99_ms"`
	P999        float64        `json:"p999_ms"`
	Max         float64        `json:"max_ms"`
	Mean        float64        `json:"mean_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Round(p / 100 * float64(len(sorted)-1)))
	return ms(sorted[i])
}

func summarize(r *result, tallies []*tally, elapsed time.Duration) {
	var all []time.Duration
	r.Statuses = map[string]int{}
	for _, t := range tallies {
		all = append(all, t.latencies...)
		r.Non2xx += t.non2xx
		r.Errors += t.errors
		for s, n := range t.statuses {
			r.Statuses[strconv.Itoa(s)] += n
		}
		if r.FirstError == "" {
			r.FirstError = t.firstErr
		}
	}
	slices.Sort(all)
	r.Requests = len(all)
	r.OK = len(all) - r.Non2xx
	r.Seconds = math.Round(elapsed.Seconds()*1000) / 1000
	r.Rate = math.Round(float64(r.Requests) / elapsed.Seconds())
	r.OKRate = math.Round(float64(r.OK) / elapsed.Seconds())
	r.P50, r.P95, r.P99, r.P999 = percentile(all, 50), percentile(all, 95), percentile(all, 99), percentile(all, 99.9)
	if len(all) > 0 {
		r.Max = ms(all[len(all)-1])
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		r.Mean = ms(sum / time.Duration(len(all)))
	}
}

func main() {
	rawURL := flag.String("url", "", "URL template; {rand:N} is replaced by a random integer in 0..N-1")
	token := flag.String("token", "", "bearer token (sent as Authorization: Bearer TOKEN)")
	duration := flag.Duration("duration", 10*time.Second, "measured duration")
	warmup := flag.Duration("warmup", 0, "unmeasured load before the measurement, same mode")
	concurrency := flag.Int("concurrency", 0, "closed loop: number of concurrent clients")
	rate := flag.Float64("rate", 0, "open loop: requests per second offered at fixed intervals")
	workers := flag.Int("workers", 256, "open loop: most requests in flight at once")
	timeout := flag.Duration("timeout", 30*time.Second, "per-request timeout")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed for {rand:N}")
	flag.Parse()

	fail := func(msg string) {
		fmt.Fprintln(os.Stderr, "loadgen:", msg)
		flag.Usage()
		os.Exit(2)
	}
	if *rawURL == "" {
		fail("-url is required")
	}
	if (*concurrency > 0) == (*rate > 0) {
		fail("give exactly one of -concurrency N (closed loop) or -rate R (open loop)")
	}
	tmpl, err := parseTemplate(*rawURL)
	if err != nil {
		fail(err.Error())
	}
	conns := *concurrency
	if *rate > 0 {
		conns = *workers
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
		IdleConnTimeout:     90 * time.Second,
	}
	c := &client{http: &http.Client{Transport: transport, Timeout: *timeout}, template: tmpl}
	if *token != "" {
		c.auth = "Bearer " + *token
	}

	r := result{URL: *rawURL}
	if *concurrency > 0 {
		r.Mode, r.Concurrency = "closed", *concurrency
		if *warmup > 0 {
			closedLoop(c, *concurrency, *warmup, *seed+1)
		}
		tallies, elapsed := closedLoop(c, *concurrency, *duration, *seed)
		summarize(&r, tallies, elapsed)
	} else {
		r.Mode, r.TargetRate, r.Workers = "open", *rate, *workers
		if *warmup > 0 {
			openLoop(c, *rate, *warmup, *workers, *seed+1)
		}
		tallies, elapsed, backlog := openLoop(c, *rate, *duration, *workers, *seed)
		summarize(&r, tallies, elapsed)
		r.Backlog = backlog
	}
	out, err := json.Marshal(r)
	if err != nil {
		panic(errors.Join(errors.New("encoding the result"), err))
	}
	fmt.Println(string(out))
}
