package demo

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// processes are the child programs a run started; stopAll ends them.
type processes struct {
	mu    sync.Mutex
	procs []*process
}

type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs a program with its output in dir/<name>.log. A child dies with
// the demo even if the demo is killed (Pdeathsig).
func (p *processes) start(name, dir string, cmd *exec.Cmd) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	proc := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		proc.err = cmd.Wait()
		f.Close()
		close(proc.done)
	}()
	p.mu.Lock()
	p.procs = append(p.procs, proc)
	p.mu.Unlock()
	return proc, nil
}

// exited reports, without waiting, whether the process has ended and why.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// tail returns the last lines of the process's output, for error messages.
func (p *process) tail(lines int) string {
	data, _ := os.ReadFile(p.log)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// stopAll sends SIGTERM to every process, newest first, and SIGKILL to any
// still running after a grace period.
func (p *processes) stopAll() {
	p.mu.Lock()
	procs := p.procs
	p.procs = nil
	p.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		proc := procs[i]
		_ = syscall.Kill(-proc.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-proc.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-proc.cmd.Process.Pid, syscall.SIGKILL)
			<-proc.done
		}
	}
}
