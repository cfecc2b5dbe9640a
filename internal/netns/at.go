package netns

import (
	"fmt"
	"runtime"

	vnetns "github.com/vishvananda/netns"
)

// At runs fn on an OS thread of its own that has entered the network
// namespace at path (a /proc/PID/ns/net or a bind mount of one, as a
// container runtime names a pod's): sockets fn opens, and nftables
// connections it makes, live there.
func At(path string, fn func() error) error {
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer ns.Close()
	return doIn(ns, fn)
}

// doIn runs fn on a thread that has entered ns. The thread is never
// unlocked, so the runtime discards it afterwards instead of reusing a
// thread in the wrong namespace.
func doIn(ns vnetns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := vnetns.Set(ns); err != nil {
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
