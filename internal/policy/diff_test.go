package policy_test

import "github.com/tandem-mesh/tandem/internal/textdiff"

func diff(want, got string) string { return textdiff.Lines(want, got) }
