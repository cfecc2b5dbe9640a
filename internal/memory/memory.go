// Package memory fits the Go runtime to the container it runs in.
package memory

import (
	"errors"
	"log/slog"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// LimitToContainer makes the Go runtime collect harder as the heap nears
// 90% of the container's memory limit, rather than let it grow to twice its
// live size and be killed. Without a limit (or with GOMEMLIMIT set, or
// AUTOMEMLIMIT=off) nothing changes.
func LimitToContainer(log *slog.Logger) {
	limit, err := memlimit.Set(memlimit.WithRatio(0.9), memlimit.WithProvider(memlimit.FromCgroup))
	switch {
	case errors.Is(err, memlimit.ErrNoLimit), errors.Is(err, memlimit.ErrNoCgroup), errors.Is(err, memlimit.ErrCgroupsNotSupported):
	case err != nil:
		log.Warn("reading the container's memory limit; the Go runtime keeps its defaults", "error", err)
	case limit > 0 && limit < 1<<62:
		log.Info("Go memory limit set from the container's", "bytes", limit)
	}
}
