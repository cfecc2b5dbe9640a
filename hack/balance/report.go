package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The goals the default must meet, as ratios of p99 latencies.
const (
	goalVsFloor      = 1.5 // default at most 1.5× the floor
	goalVsRoundRobin = 0.5 // default at most half of round robin
)

// printTable writes one row per mode: the share of calls each pod answered
// and the latency of all its runs' calls, then the tried settings and the
// goals.
func printTable(w io.Writer, o options, shown, tried []mode, results map[string]*result) {
	fmt.Fprintf(w, "\nOne of 3 greeter servers answers %v late; a grpc-go client keeps %d calls in flight; %d calls a run, %d %s per mode.\n\n",
		o.delay, o.concurrency, o.calls, o.runs, plural(o.runs, "run", "runs"))
	fmt.Fprintf(w, "%-31s %-22s  %s\n", "", "calls per server", "latency, ms (all runs)")
	fmt.Fprintf(w, "%-31s %6s  %6s  %6s  %7s %7s %7s %7s  %6s   %s\n", "mode", "slow", "fast", "fast", "mean", "p50", "p99", "p99.9", "failed", "p99 of each run, ms")
	for _, m := range shown {
		printRow(w, m, results[m.key])
	}
	if len(tried) > 0 {
		fmt.Fprintf(w, "\nThe other settings of a TrafficPolicy for the proxyless client, on the same three servers:\n")
		for _, m := range tried {
			printRow(w, m, results[m.key])
		}
	}
	fmt.Fprintf(w, "\nThe floor has a fast server (%s) in the slow one's place. The cluster IP picks one server per connection, at random.\n"+
		"Failed counts every call of the mode's clients, warm-ups included; shares count the answered ones.\n", twinPod)
	def, floor, rr := p99(results["default"]), p99(results["floor"]), p99(results["round-robin"])
	fmt.Fprintf(w, "Goals for the default's p99: at most %.1f× the floor's: %.2f× (%s); at most %.1f× round robin's: %.2f× (%s).\n",
		goalVsFloor, def/floor, verdict(def/floor <= goalVsFloor), goalVsRoundRobin, def/rr, verdict(def/rr <= goalVsRoundRobin))
}

func printRow(w io.Writer, m mode, r *result) {
	shares := r.shares()
	total := 0
	for _, n := range shares {
		total += n
	}
	var cells []string
	for _, n := range shares {
		cells = append(cells, fmt.Sprintf("%5.1f%%", 100*float64(n)/float64(max(total, 1))))
	}
	var runs []string
	for _, d := range r.runP99 {
		runs = append(runs, fmt.Sprintf("%.2f", ms(d)))
	}
	fmt.Fprintf(w, "%-31s %s  %7.2f %7.2f %7.2f %7.2f  %6d   %s\n", m.label, strings.Join(cells, "  "),
		ms(r.mean()), ms(percentile(r.lat, 0.5)), ms(percentile(r.lat, 0.99)), ms(percentile(r.lat, 0.999)), r.failed, strings.Join(runs, " "))
}

func p99(r *result) float64 { return ms(percentile(r.lat, 0.99)) }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// modeJSON is one mode in the JSON file.
type modeJSON struct {
	Shares []int   `json:"shares"` // calls per server, the slow one first
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	P999   float64 `json:"p999_ms"`
	Failed int     `json:"failed,omitempty"`
}

// writeJSON writes the results keyed by mode.
func writeJSON(path string, shown []mode, results map[string]*result) error {
	out := map[string]modeJSON{}
	for _, m := range shown {
		r := results[m.key]
		out[m.key] = modeJSON{
			Shares: r.shares(),
			P50:    roundMS(percentile(r.lat, 0.5)),
			P99:    roundMS(percentile(r.lat, 0.99)),
			P999:   roundMS(percentile(r.lat, 0.999)),
			Failed: r.failed,
		}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// roundMS is d in milliseconds to the microsecond.
func roundMS(d time.Duration) float64 { return math.Round(ms(d)*1000) / 1000 }
