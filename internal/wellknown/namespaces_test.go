package wellknown

import (
	"slices"
	"strings"
	"testing"
)

func TestParseWatchNamespaces(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  ", nil},
		{"shop", []string{"shop"}},
		{"shop,payments", []string{"shop", "payments"}},
		{" shop , payments ", []string{"shop", "payments"}},
	} {
		got, err := ParseWatchNamespaces(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseWatchNamespaces(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, wantInErr string }{
		{"shop,,payments", `namespace "" (item 2 of the list) is empty`},
		{"shop,", `namespace "" (item 2 of the list) is empty`},
		{"shop,Payments", `"Payments" is not a namespace name`},
		{"shop,pay_ments", `"pay_ments" is not a namespace name`},
		{strings.Repeat("a", 64), "is not a namespace name"},
	} {
		got, err := ParseWatchNamespaces(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.wantInErr) {
			t.Errorf("ParseWatchNamespaces(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.wantInErr)
		}
	}
}
