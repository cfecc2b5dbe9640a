package main

import (
	"flag"
	"io"

	"github.com/tandem-mesh/tandem/internal/injectcmd"
)

// The offline commands, shared with kubectl tandem.

func runInject(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return injectcmd.Inject("injector", args, stdin, stdout, stderr)
}

func runUninject(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return injectcmd.Uninject("injector", args, stdin, stdout, stderr)
}

// injectionFlags are the sidecar settings of serve and policy.
type injectionFlags = injectcmd.Flags

var parseFlags = injectcmd.ParseFlags

type flagSet = flag.FlagSet

func newFlagSet(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ContinueOnError) }
