package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// Held is a new, empty network namespace kept alive by a sleeping child,
// as a container runtime keeps a pod sandbox's: Path names it for
// whatever enters it by path (At, a CNI plugin).
type Held struct {
	Path string
	stop chan struct{}
	done chan error
}

// Hold makes a network namespace that lasts until Close, or until this
// process ends. The child is started from a thread locked for that
// purpose: the kernel kills it (Pdeathsig) when the thread that started it
// exits, and the Go runtime ends locked threads whose goroutine returns.
func Hold() (*Held, error) {
	h := &Held{stop: make(chan struct{}), done: make(chan error, 1)}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		holder := exec.Command("sleep", "infinity")
		holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
		if err := holder.Start(); err != nil {
			started <- fmt.Errorf("creating a network namespace: %w", err)
			return
		}
		h.Path = fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)
		started <- nil
		<-h.stop
		err := holder.Process.Kill()
		_ = holder.Wait()
		if errors.Is(err, os.ErrProcessDone) {
			err = nil
		}
		h.done <- err
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return h, nil
}

// Close ends the namespace (and whatever interfaces only it holds).
func (h *Held) Close() error {
	close(h.stop)
	return <-h.done
}
