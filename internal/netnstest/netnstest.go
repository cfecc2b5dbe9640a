//go:build linux

// Package netnstest runs part of a test inside a fresh network namespace
// that has nothing but a loopback interface, so the test can install
// firewall rules, addresses and routes without touching the machine.
//
// Goroutines cannot be pinned to a namespace reliably, so the test binary
// re-executes itself: Run starts the named helper test in a new namespace
// and passes it a JSON input; the helper calls Child, does its work there
// and returns a JSON result that Run decodes for the assertions.
//
//	func TestThing(t *testing.T) {
//		var got Result
//		netnstest.Run(t, "TestThingHelper", Input{...}, &got)
//		// assert on got
//	}
//
//	func TestThingHelper(t *testing.T) {
//		netnstest.Child(t, func(t *testing.T, in Input) any { ...; return Result{...} })
//	}
//
// As root the namespace is a plain network namespace. Otherwise it lives in
// a new user namespace where the caller is root (like `unshare --user
// --map-root-user --net`), which only maps that one user: CanSwitchUser
// tells tests that need other UIDs whether to skip.
package netnstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

const (
	envHelper = "NETNSTEST_HELPER"
	envInput  = "NETNSTEST_INPUT"
	envOutput = "NETNSTEST_OUTPUT"
)

// timeout bounds one helper run; the helpers dial loopback only.
const timeout = 2 * time.Minute

// CanSwitchUser reports whether helpers can act as users other than root,
// which needs a real root parent (a user namespace maps a single UID).
func CanSwitchUser() bool { return os.Geteuid() == 0 }

// Run runs the test named helper of this test binary inside a new network
// namespace, gives it in, and decodes its result into out. It skips t when
// the machine cannot make a namespace, and fails it when the helper fails.
func Run(t testing.TB, helper string, in, out any) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the network namespace tests need `ip` from iproute2 on PATH")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("locating the test binary: %v", err)
	}
	dir := t.TempDir()
	inPath, outPath := filepath.Join(dir, "input.json"), filepath.Join(dir, "output.json")
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatalf("encoding the input of %s: %v", helper, err)
	}
	if err := os.WriteFile(inPath, data, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^"+helper+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envHelper+"="+helper, envInput+"="+inPath, envOutput+"="+outPath)
	cmd.SysProcAttr = namespaceAttr()
	output, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err != nil && !errors.As(err, &exit):
		// The clone itself failed: no namespaces for this user here.
		t.Skipf("skipping: cannot create a network namespace (need root, or unprivileged user namespaces for `unshare --user --map-root-user --net`): %v", err)
	case err != nil:
		t.Fatalf("%s failed inside its network namespace: %v\n%s", helper, err, output)
	}
	result, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatalf("%s wrote no result (is it a test that calls netnstest.Child?): %v\n%s", helper, err, output)
	}
	if err := json.Unmarshal(result, out); err != nil {
		t.Fatalf("decoding the result of %s: %v\n%s", helper, err, result)
	}
}

func namespaceAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	return attr
}

// Child is the body of a helper test. Started by Run, it brings loopback
// up, decodes the input, runs fn and hands its result back; in a normal
// test run it skips.
func Child[In any](t *testing.T, fn func(t *testing.T, in In) any) {
	if os.Getenv(envHelper) != t.Name() {
		t.Skip("helper: runs only inside the network namespace netnstest.Run creates")
	}
	var in In
	data, err := os.ReadFile(os.Getenv(envInput))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &in); err != nil {
		t.Fatalf("decoding the input: %v", err)
	}
	IP(t, "link", "set", "lo", "up")
	out := fn(t, in)
	if t.Failed() {
		return
	}
	data, err = json.Marshal(out)
	if err != nil {
		t.Fatalf("encoding the result: %v", err)
	}
	if err := os.WriteFile(os.Getenv(envOutput), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// IP runs `ip args...` in the helper's namespace and fails t on error.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if err := ip(args...); err != nil {
		t.Fatal(err)
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// LoopbackAddress makes addr (a bare IPv4 or IPv6 address) local, so a
// test server can listen on it: a documentation address standing in for a
// Service or a remote host.
func LoopbackAddress(t testing.TB, addr string) {
	t.Helper()
	if strings.Contains(addr, ":") {
		IP(t, "-6", "addr", "add", addr+"/128", "dev", "lo", "nodad")
		return
	}
	IP(t, "addr", "add", addr+"/32", "dev", "lo")
}

// LoopbackRoute routes prefix over loopback, so every address in it is
// reachable (connect does not fail with "network unreachable") even where
// nothing listens.
func LoopbackRoute(t testing.TB, prefix string) {
	t.Helper()
	family := "-4"
	if strings.Contains(prefix, ":") {
		family = "-6"
	}
	IP(t, family, "route", "add", prefix, "dev", "lo")
}

// AsUser runs fn on an OS thread of its own whose user and group IDs are
// uid and gid, and returns its error. Linux credentials are per thread and
// a socket keeps those of the thread that created it, so sockets fn opens
// belong to uid/gid while the rest of the process stays root. Go's
// syscall.Setuid would change every thread, hence the raw system calls;
// the thread is never unlocked, so the runtime discards it afterwards.
func AsUser(uid, gid uint32, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
			errc <- fmt.Errorf("setresgid %d: %w", gid, e)
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			errc <- fmt.Errorf("setresuid %d: %w", uid, e)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// InetRules counts the inet tables named table and the rules of their
// chain, as the kernel reports them.
func InetRules(t testing.TB, table, chain string) (tables, rules int) {
	t.Helper()
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	all, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("listing inet tables: %v", err)
	}
	for _, tb := range all {
		if tb.Name != table {
			continue
		}
		tables++
		got, err := conn.GetRules(tb, &nftables.Chain{Name: chain, Table: tb})
		if err != nil {
			t.Fatalf("listing the rules of inet %s %s: %v", table, chain, err)
		}
		rules += len(got)
	}
	return tables, rules
}

// Peer is a second network namespace joined to the helper's by a veth
// pair, standing in for another pod or node that connects in.
type Peer struct{ ns *os.File }

// NewPeer makes a network namespace linked to the current one by a veth
// pair; local and remote are the addresses (with prefix length) of the two
// ends. The namespace lives as long as the test.
func NewPeer(t testing.TB, local, remote []string) *Peer {
	t.Helper()
	// A sleeping child holds the new namespace; its /proc entry names it.
	holder := exec.Command("sleep", "3600")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := holder.Start(); err != nil {
		t.Fatalf("creating the peer namespace: %v", err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	p := &Peer{ns: ns}

	IP(t, "link", "add", "peer0", "type", "veth", "peer", "name", "peer1", "netns", strconv.Itoa(holder.Process.Pid))
	configure := func(dev string, addrs []string) error {
		for _, a := range addrs {
			args := []string{"addr", "add", a, "dev", dev}
			if strings.Contains(a, ":") {
				args = append([]string{"-6"}, append(args, "nodad")...)
			}
			if err := ip(args...); err != nil {
				return err
			}
		}
		return ip("link", "set", dev, "up")
	}
	if err := configure("peer0", local); err != nil {
		t.Fatal(err)
	}
	err = p.Do(func() error {
		if err := ip("link", "set", "lo", "up"); err != nil {
			return err
		}
		return configure("peer1", remote)
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Do runs fn on an OS thread of its own that has entered the peer's
// namespace: sockets fn opens, and programs it starts, live there. The
// thread is never unlocked, so the runtime discards it afterwards.
func (p *Peer) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(p.ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering the peer namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
