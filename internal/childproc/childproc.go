// Package childproc runs the programs the demo and the benchmarks start:
// each with its output in a log file, ended with the parent even when the
// parent is killed, and stopped together, newest first.
package childproc

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

// Group holds the child programs a run started; StopAll ends them.
type Group struct {
	mu    sync.Mutex
	procs []*Process
}

// Process is one started program.
type Process struct {
	Name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// Start runs a program with its output in dir/<name>.log. A child dies with
// its parent even if the parent is killed (Pdeathsig).
func (p *Group) Start(name, dir string, cmd *exec.Cmd) (*Process, error) {
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
	proc := &Process{Name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
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

// Exited reports, without waiting, whether the process has ended and why.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Tail returns the last lines of the process's output, for error messages.
func (p *Process) Tail(lines int) string {
	data, _ := os.ReadFile(p.log)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// StopAll sends SIGTERM to every process, newest first, and SIGKILL to any
// still running after a grace period.
func (p *Group) StopAll() {
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
