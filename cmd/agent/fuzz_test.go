package main

import (
	"io"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzRunFlags feeds arbitrary values to the flags that take free text: a
// bad value is refused naming its flag, a good one is taken as given.
func FuzzRunFlags(f *testing.F) {
	f.Add("shop,payments", ":15021", "info", "5s")
	f.Add("", "127.0.0.1:0", "debug", "0s")
	f.Add("a,,b", "[::1]:15021", "WARN", "1h")
	f.Add(" shop , payments ", ":15021", "info", "5s")
	f.Add("Shop", "15021", "loud", "-1s")
	f.Fuzz(func(t *testing.T, namespaces, addr, level, drain string) {
		args := []string{"--watch-namespaces", namespaces, "--health-addr", addr, "--log-level", level,
			"--drain-duration", drain, "--node-id", "fuzz"}
		c, err := parseRunFlags(args, io.Discard)
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, "watch-namespaces") && !strings.Contains(msg, "health-addr") &&
				!strings.Contains(msg, "log-level") && !strings.Contains(msg, "drain-duration") {
				t.Fatalf("error %q names no flag", msg)
			}
			return
		}
		// Names are taken as given, bar the spaces around them.
		if strings.TrimSpace(namespaces) == "" {
			if len(c.namespaces) != 0 {
				t.Fatalf("no --watch-namespaces gave %q", c.namespaces)
			}
		} else {
			items := strings.Split(namespaces, ",")
			for i := range items {
				items[i] = strings.TrimSpace(items[i])
			}
			if strings.Join(c.namespaces, ",") != strings.Join(items, ",") {
				t.Fatalf("--watch-namespaces %q parsed as %q", namespaces, c.namespaces)
			}
		}
		for _, ns := range c.namespaces {
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				t.Fatalf("accepted invalid namespace %q", ns)
			}
		}
		if c.healthAddr != addr || c.drain < 0 || !validLevel(level) {
			t.Fatalf("accepted %q %q %q as %+v", addr, level, drain, c)
		}
	})
}
