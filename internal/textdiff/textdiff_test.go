package textdiff

import (
	"strings"
	"testing"
)

func TestLines(t *testing.T) {
	if d := Lines("a\nb\n", "a\nb\n"); d != "" {
		t.Errorf("equal texts: %q", d)
	}
	d := Lines("a\nb\nc", "a\nB\nc\nd")
	want := "line 2:\n  want: b\n  got:  B\nline 4:\n  want: \n  got:  d\n"
	if d != want {
		t.Errorf("Lines = %q, want %q", d, want)
	}
	long := strings.Repeat("x", 1000)
	if d := Lines(long, ""); len(d) > 400 || !strings.Contains(d, "…") {
		t.Errorf("a long line is not clipped: %d bytes", len(d))
	}
	var many []string
	for range 50 {
		many = append(many, "x")
	}
	if n := strings.Count(Lines(strings.Join(many, "\n"), ""), "line "); n != 20 {
		t.Errorf("Lines listed %d lines, want at most 20", n)
	}
}
