package xds

import (
	"regexp/syntax"
	"strings"
	"testing"
)

// RE2's own program sizes (RE2::ProgramSize of libre2 2022-06-01) of
// expressions like those routes match paths, headers and methods with:
// the estimate that decides what Envoy would refuse is never below them.
var re2Sizes = []struct {
	re   string
	size int
}{
	{`a`, 5},
	{`/(alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda|mu|nu|xi|omicron|pi|rho|sigma|tau|upsilon)/[^/]+`, 103},
	{`abc`, 7},
	{`/api/.*`, 17},
	{`^/api/v[0-9]+/users/.*$`, 21},
	{`/[^/]+/SayHello`, 23},
	{`/helloworld\.Greeter/[^/]+`, 33},
	{`(foo|bar|baz)`, 13},
	{`[a-z]+@[a-z]+\.com`, 13},
	{`/v[0-9]{1,3}/.*`, 20},
	{`.*`, 12},
	{`(a|b)*c{2,5}`, 15},
	{`/users/[0-9]+/orders/[0-9]+(/items)?`, 32},
	{`x{10}`, 14},
	{`[[:alpha:]]+`, 6},
	{`(?i)hello`, 9},
	{`[^/]+`, 13},
	{`/[^/]+/[^/]+`, 24},
	{`\p{Greek}+`, 67},
	{`[α-ω]+`, 9},
	{`héllo`, 10},
	{`/(a|b|c|d|e|f|g|h|i|j)/.*`, 17},
	{`\w+`, 8},
	{`\d{3}-\d{4}`, 12},
	{`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`, 20},
	{`/api/v1/(users|orders|items)/[0-9]+`, 33},
	{`.*foo.*`, 23},
	{`(?s).`, 11},
	{`\S+`, 15},
	{`[^a-z]`, 12},
	{`/a{2,30}`, 63},
	{`^/(en|de|fr|es|it|nl|pl|pt|ru|ja|zh)/.*$`, 36},
	{`[\x{80}-\x{10FFFF}]`, 10},
	{`[^\x00-\x7f]+`, 11},
	{`\p{Han}`, 81},
	{`\pL`, 1197},
	{`[a-zA-Zа-яА-Я]+`, 10},
	{`(?i)[a-zé]+`, 14},
	{`\p{Cyrillic}+`, 38},
	{`[😀-🙏]`, 10},
	{`(?i)straße`, 16},
	{`[\x{10000}-\x{10FFFF}]`, 12},
	{`\p{Lu}`, 794},
	{`\p{Arabic}`, 102},
	{`(?i)s`, 7},
	{`(?i)k+`, 9},
	{`(?i)/api/users`, 18},
	{`(?i)[a-z]+`, 11},
	{`/(alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda)/[^/]+/[^/]+/[^/]+`, 90},
	{`[^\x{100}-\x{200}]`, 20},
	{`[\x{80}-\x{10FFFF}a]`, 11},
}

func TestRE2ProgramSizeIsNeverBelowRE2s(t *testing.T) {
	for _, c := range re2Sizes {
		parsed, err := syntax.Parse(c.re, syntax.Perl)
		if err != nil {
			t.Fatalf("%q: %v", c.re, err)
		}
		got := re2ProgramSize(parsed.Simplify())
		if got < c.size {
			t.Errorf("%q: estimated %d instructions, RE2 counts %d: a regular expression Envoy refuses could pass", c.re, got, c.size)
		}
		// Path-like expressions must not be refused early: ASCII only,
		// the estimate stays within a fifth of RE2's count.
		if ascii(c.re) && got > c.size*6/5+1 {
			t.Errorf("%q: estimated %d instructions, RE2 counts %d: too pessimistic", c.re, got, c.size)
		}
	}
}

func ascii(s string) bool {
	for _, r := range s {
		if r >= 0x80 {
			return false
		}
	}
	for _, unicodeClass := range []string{`\p`, `\P`, `\x{`, `(?i)`, `\S`, `\W`, `\D`, `[^`, `^`} {
		if strings.Contains(s, unicodeClass) {
			return false
		}
	}
	return true
}
