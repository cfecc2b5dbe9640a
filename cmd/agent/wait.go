package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

func waitCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent wait", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "http://127.0.0.1:"+strconv.Itoa(wellknown.AgentHealthPort)+"/ready", "readiness URL to poll")
	timeout := fs.Duration("timeout", 120*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agent wait: unexpected argument %q: agent wait takes flags only\n", fs.Arg(0))
		return 2
	}
	if u, err := url.Parse(*target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "agent wait: --url %q: want an http:// URL, like http://127.0.0.1:15021/ready\n", *target)
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "agent wait: --timeout %v: want a positive duration, like 120s\n", *timeout)
		return 2
	}
	start := time.Now()
	if err := waitReady(context.Background(), *target, *timeout); err != nil {
		fmt.Fprintf(stderr, "agent wait: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "ready after %v\n", time.Since(start).Round(time.Millisecond))
	return 0
}

// waitReady polls url until it answers 200, backing off from 100ms to 1s.
func waitReady(ctx context.Context, target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	delay := 100 * time.Millisecond
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status + ": " + strings.TrimSpace(string(body))
		} else if ctx.Err() == nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v; last answer: %s", target, timeout, last)
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}
