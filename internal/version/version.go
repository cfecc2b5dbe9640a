// Package version reports the build's version, shared by every binary.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set at link time (-X) by release builds; otherwise the module
// version or VCS revision recorded by the Go toolchain is used.
var Version = ""

// Number is the version alone, such as "v0.1.0" or "devel+0123456789ab".
func Number() string {
	if Version != "" {
		return Version
	}
	v := "devel"
	if info, ok := debug.ReadBuildInfo(); ok {
		if info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v
}

// String returns a one-line description such as "tandem v0.1.0 (go1.26.8 linux/amd64)".
func String() string {
	return fmt.Sprintf("tandem %s (%s %s/%s)", Number(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
