package capture

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []uint16
	}{
		{"", nil},
		{"8080", []uint16{8080}},
		{"8080,9090", []uint16{8080, 9090}},
		{" 8080 , 9090 ", []uint16{8080, 9090}},
		{"1,65535", []uint16{1, 65535}},
		{"9090,8080,9090", []uint16{9090, 8080, 9090}},
		{"007", []uint16{7}},
	} {
		got, err := ParsePorts(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParsePortsErrors(t *testing.T) {
	for _, tc := range []struct {
		in, wantInErr string
	}{
		{"0", `"0" is not a TCP port number from 1 to 65535`},
		{"65536", `"65536"`},
		{"8080,70000", `"70000" is not a TCP port number from 1 to 65535`},
		{"-1", `"-1"`},
		{"+80", `"+80"`},
		{"0x50", `"0x50"`},
		{"80-90", `"80-90"`},
		{"http", `"http"`},
		{"8080,,9090", "item 2 of the list is empty"},
		{"8080,", "item 2 of the list is empty"},
		{",", "item 1 of the list is empty"},
		{" ", "item 1 of the list is empty"},
		{"8080 9090", `"8080 9090"`},
	} {
		got, err := ParsePorts(tc.in)
		if err == nil {
			t.Errorf("ParsePorts(%q) = %v, want an error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantInErr) || !strings.Contains(err.Error(), "1 to 65535") {
			t.Errorf("ParsePorts(%q) error %q: want it to contain %q and the accepted range", tc.in, err, tc.wantInErr)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		in   string
		want []netip.Prefix
	}{
		{"", nil},
		{"10.0.0.0/8", []netip.Prefix{p("10.0.0.0/8")}},
		{"10.0.0.0/8,fd00::/8", []netip.Prefix{p("10.0.0.0/8"), p("fd00::/8")}},
		{" 10.96.0.0/12 ,2001:db8::/32", []netip.Prefix{p("10.96.0.0/12"), p("2001:db8::/32")}},
		{"192.0.2.1", []netip.Prefix{p("192.0.2.1/32")}},
		{"2001:db8::1", []netip.Prefix{p("2001:db8::1/128")}},
		{"0.0.0.0/0", []netip.Prefix{p("0.0.0.0/0")}},
		{"*", []netip.Prefix{p("0.0.0.0/0"), p("::/0")}},
		{"10.0.0.0/8,*", []netip.Prefix{p("10.0.0.0/8"), p("0.0.0.0/0"), p("::/0")}},
	} {
		got, err := ParseCIDRs(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseCIDRs(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseCIDRsErrors(t *testing.T) {
	for _, tc := range []struct {
		in, wantInErr string
	}{
		{"10.0.0.0/33", `"10.0.0.0/33" is not an IPv4 or IPv6 CIDR`},
		{"10.0.0/8", `"10.0.0/8"`},
		{"10.0.0.0/8,bogus", `"bogus" is not an IPv4 or IPv6 CIDR`},
		{"256.0.0.0/8", `"256.0.0.0/8"`},
		{"fe80::1%eth0", `"fe80::1%eth0"`},
		{"10.0.0.0/-1", `"10.0.0.0/-1"`},
		{"10.96.0.1/12", `"10.96.0.1/12" has bits set past the /12 prefix; the range it names is 10.96.0.0/12, or did you mean 10.96.0.1/32?`},
		{"fd00::/7", `the range it names is fc00::/7`},
		{"::ffff:10.0.0.0/104", "IPv4-mapped"},
		{"10.0.0.0/8,,fd00::/8", "item 2 of the list is empty"},
		{"10.0.0.0/8,", "item 2 of the list is empty"},
		{"**", `"**"`},
	} {
		got, err := ParseCIDRs(tc.in)
		if err == nil {
			t.Errorf("ParseCIDRs(%q) = %v, want an error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantInErr) {
			t.Errorf("ParseCIDRs(%q) error %q: want it to contain %q", tc.in, err, tc.wantInErr)
		}
	}
}

func TestJoin(t *testing.T) {
	if got := JoinPorts([]uint16{8080, 9090}); got != "8080,9090" {
		t.Errorf("JoinPorts(uint16) = %q, want 8080,9090", got)
	}
	if got := JoinPorts([]int32{50051}); got != "50051" {
		t.Errorf("JoinPorts(int32) = %q, want 50051", got)
	}
	if got := JoinPorts([]uint16(nil)); got != "" {
		t.Errorf("JoinPorts(nil) = %q, want empty", got)
	}
	prefixes := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	if got := JoinCIDRs(prefixes); got != "10.0.0.0/8,fd00::/8" {
		t.Errorf("JoinCIDRs = %q, want 10.0.0.0/8,fd00::/8", got)
	}
	// What JoinCIDRs writes, ParseCIDRs reads back.
	if back, err := ParseCIDRs(JoinCIDRs(prefixes)); err != nil || !slices.Equal(back, prefixes) {
		t.Errorf("ParseCIDRs(JoinCIDRs(%v)) = %v, %v", prefixes, back, err)
	}
}
