package netns

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// Rerun runs this program again with args in a new network namespace
// (Command), its standard streams those of this process, with env
// ("NAME=value") added to its environment. SIGINT and SIGTERM are passed on,
// so the child can stop what it started. It returns the child's exit code.
func Rerun(env []string, args ...string) (int, error) {
	cmd, err := Command(args...)
	if err != nil {
		return 0, err
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer close(sigs)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go func() {
		for sig := range sigs {
			_ = cmd.Process.Signal(sig)
		}
	}()
	err = cmd.Wait()
	if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return 0, err
}
