// Package textdiff shows how two texts differ, line by line, for test failures.
package textdiff

import (
	"fmt"
	"strings"
)

// maxLines and maxWidth bound what Lines shows, enough to see what changed.
const (
	maxLines = 20
	maxWidth = 300
)

// Lines lists the first lines that differ between want and got, with their
// line numbers; it is empty when they are equal.
func Lines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < maxLines; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, clip(wl), clip(gl))
			shown++
		}
	}
	return b.String()
}

func clip(s string) string {
	if len(s) > maxWidth {
		return s[:maxWidth] + "…"
	}
	return s
}
