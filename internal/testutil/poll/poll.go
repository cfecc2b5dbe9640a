// Package poll waits in tests for conditions that other goroutines or
// processes make true.
package poll

import (
	"testing"
	"time"
)

// interval between checks: short enough to measure sub-second latencies.
const interval = 5 * time.Millisecond

// Until fails t unless cond becomes true within d.
func Until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(interval)
	}
}

// Never fails t if cond becomes true within d.
func Never(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("unexpected within %v: %s", d, what)
		}
		time.Sleep(interval)
	}
}

// Eventually fails t unless cond returns nil within d; the failure shows
// cond's last error, which says what was still wrong.
func Eventually(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(interval)
	}
}
