package netns

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// CanSwitchUser reports whether this process can act as users other than
// root: it is root in a user namespace that maps more than one ID. A child
// of Command started by a non-root caller maps only that caller, so tests
// that need other UIDs check this (in the parent, before netnstest.RunTest).
func CanSwitchUser() bool {
	if os.Geteuid() != 0 {
		return false
	}
	m, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	lines := strings.Split(strings.TrimSpace(string(m)), "\n")
	var first, lower, count uint64
	_, err = fmt.Sscan(lines[0], &first, &lower, &count)
	return err == nil && (len(lines) > 1 || count > 1)
}

// AsUser runs fn on an OS thread of its own whose user and group IDs are
// uid and gid, and returns its error. Linux credentials belong to threads,
// and a socket keeps those of the thread that created it, so sockets fn
// opens belong to uid/gid while the rest of the process stays root. Go's
// syscall.Setuid would change every thread, hence the raw system calls;
// the thread is never unlocked, so the runtime discards it afterwards.
func AsUser(uid, gid uint32, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := BecomeUser(uid, gid); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// BecomeUser gives the calling thread the user and group IDs uid and gid.
// Call it only on a locked thread that is never unlocked (inside AsUser or
// At), so that no other goroutine runs with these credentials.
func BecomeUser(uid, gid uint32) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", uid, e)
	}
	return nil
}
