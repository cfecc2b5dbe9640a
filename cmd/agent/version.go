package main

import (
	"fmt"
	"io"

	"github.com/tandem-mesh/tandem/internal/version"
)

// runVersion prints the version.
func runVersion(_ []string, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, version.String())
	return 0
}
