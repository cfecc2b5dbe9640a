package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitUntilReady(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		if calls.Add(1) < 4 {
			http.Error(w, "informers have not synced yet", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"wait", "--url", srv.URL + "/ready", "--timeout", "10s"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if calls.Load() != 4 || !strings.Contains(stdout.String(), "ready after") {
		t.Fatalf("%d polls, stdout %q; want 4 polls and a ready message", calls.Load(), stdout.String())
	}
}

func TestWaitTimesOutWithLastAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Envoy has not ACKed clusters and listeners yet", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var stderr bytes.Buffer
	start := time.Now()
	code := runMain([]string{"wait", "--url", srv.URL, "--timeout", "700ms"}, io.Discard, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if took := time.Since(start); took < 700*time.Millisecond || took > 5*time.Second {
		t.Errorf("gave up after %v, want about 700ms", took)
	}
	for _, want := range []string{srv.URL, "700ms", "503", "not ACKed"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("message %q lacks %q", stderr.String(), want)
		}
	}
}

func TestWaitFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "127.0.0.1:15021/ready"},
		{"--timeout", "0s"},
		{"--timeout", "later"},
		{"extra"},
	} {
		var stderr bytes.Buffer
		if code := runMain(append([]string{"wait"}, args...), io.Discard, &stderr); code != 2 {
			t.Errorf("agent wait %v: exit %d, want 2", args, code)
		}
		if !strings.Contains(stderr.String(), args[len(args)-1]) {
			t.Errorf("agent wait %v: message %q does not name the bad value", args, stderr.String())
		}
	}
}
