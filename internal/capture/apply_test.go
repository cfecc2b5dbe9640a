//go:build linux

package capture

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExplainHints checks the operator hints for the kernel's answers when
// a capability or a kernel feature is missing (the EPERM case also runs
// for real in TestApplyWithoutPermission).
func TestExplainHints(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{unix.EPERM, "CAP_NET_ADMIN"},
		{unix.EACCES, "CAP_NET_ADMIN"},
		{unix.EPROTONOSUPPORT, "kernel lacks nf_tables NAT support"},
		{unix.EOPNOTSUPP, "kernel lacks nf_tables NAT support"},
		{unix.ENOENT, "nft_chain_nat and nft_redir"},
		{unix.EAFNOSUPPORT, "kernel lacks nf_tables NAT support"},
		{unix.EINVAL, ""},
	} {
		wrapped := fmt.Errorf("conn.Receive: %w", tc.err)
		got := explain(wrapped).Error()
		if !strings.Contains(got, tc.err.Error()) {
			t.Errorf("explain(%v) = %q: lost the kernel's error", tc.err, got)
		}
		if tc.want == "" {
			if strings.Contains(got, "CAP_NET_ADMIN") || strings.Contains(got, "nf_tables") {
				t.Errorf("explain(%v) = %q: a hint for an error that has none", tc.err, got)
			}
		} else if !strings.Contains(got, tc.want) {
			t.Errorf("explain(%v) = %q, want the hint %q", tc.err, got, tc.want)
		}
	}
}
