package policy_test

import "github.com/tandem-mesh/tandem/internal/testutil/textdiff"

func diff(want, got string) string { return textdiff.Lines(want, got) }
