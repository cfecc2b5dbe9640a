//go:build linux

package main

import (
	"fmt"
	"io"
)

func runInstall(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "tandem-cni install: not built yet")
	return 1
}
