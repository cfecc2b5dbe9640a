package childproc

import (
	"os/exec"
	"strings"
	"testing"
)

func TestStartLogsAndStopAllEnds(t *testing.T) {
	dir := t.TempDir()
	var g Group
	quick, err := g.Start("quick", dir, exec.Command("sh", "-c", "echo one; echo two; echo three >&2; exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	long, err := g.Start("long", dir, exec.Command("sleep", "600"))
	if err != nil {
		t.Fatal(err)
	}
	<-quick.done
	done, err := quick.Exited()
	if !done || err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("Exited() = %v, %v; want true and exit status 3", done, err)
	}
	if got := quick.Tail(2); got != "two\nthree" {
		t.Fatalf("Tail(2) = %q, want the last two lines of stdout and stderr", got)
	}
	if done, _ := long.Exited(); done {
		t.Fatal("sleep 600 reported as ended")
	}
	g.StopAll()
	// SIGTERM, not the SIGKILL that follows a grace period.
	if done, err := long.Exited(); !done || err == nil || err.Error() != "signal: terminated" {
		t.Fatalf("after StopAll, long Exited() = %v, %v; want ended by SIGTERM", done, err)
	}
	if g.procs != nil {
		t.Fatal("StopAll left processes in the group")
	}
}

func TestStartReportsAMissingProgram(t *testing.T) {
	var g Group
	if _, err := g.Start("ghost", t.TempDir(), exec.Command("/nonexistent/program")); err == nil || !strings.Contains(err.Error(), "starting ghost") {
		t.Fatalf("Start of a missing program = %v, want an error naming it", err)
	}
}
