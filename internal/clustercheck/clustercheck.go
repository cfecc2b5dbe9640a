// Package clustercheck checks a cluster with the caller's credentials:
// whether Tandem can be installed there (Pre), and whether an install is
// sound (Installed). Each check says what it found and, when something is
// wrong, what to do about it.
package clustercheck

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tandem-mesh/tandem/internal/podconn"
)

// Result is one check.
type Result struct {
	Name string `json:"name"`
	// OK is false when the check failed; Warning marks a passed check
	// that still needs attention.
	OK      bool   `json:"ok"`
	Warning bool   `json:"warning,omitempty"`
	Message string `json:"message"`
	// Hint says what to do, for a failure or a warning.
	Hint string `json:"hint,omitempty"`
}

// Env is what the checks use.
type Env struct {
	Kube    kubernetes.Interface
	Forward *podconn.Forwarder
	// Namespace is Tandem's.
	Namespace string
	// Now is the time certificates are checked at; time.Now when nil.
	Now func() time.Time
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func pass(name, format string, args ...any) Result {
	return Result{Name: name, OK: true, Message: fmt.Sprintf(format, args...)}
}

func warn(name, hint, format string, args ...any) Result {
	return Result{Name: name, OK: true, Warning: true, Message: fmt.Sprintf(format, args...), Hint: hint}
}

func fail(name, hint, format string, args ...any) Result {
	return Result{Name: name, Message: fmt.Sprintf(format, args...), Hint: hint}
}

// Failed reports whether any check failed.
func Failed(rs []Result) bool {
	return slices.ContainsFunc(rs, func(r Result) bool { return !r.OK })
}

// list writes up to max names, then how many more.
func list(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:max], ", "), len(names)-max)
}

// count is "1 thing" or "n things".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// ctxTimeout bounds each check.
func ctxTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}
