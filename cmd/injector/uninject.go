package main

import (
	"flag"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

func init() {
	register(command{name: "uninject", summary: "remove the sidecars from manifests injected before (offline)", run: runUninject})
}

func runUninject(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("uninject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: injector uninject -f FILE|-\n\n"+
			"Writes the manifests of FILE to standard output with everything the %s\n"+
			"annotation of each pod and pod template lists removed, and the annotation:\n"+
			"the inverse of 'injector inject'. The rest of the text is written as it came.\n\nFlags:\n", wellknown.StatusAnnotation)
		fs.PrintDefaults()
	}
	file := fs.String("f", "", "manifest file, or - for standard input")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *file == "" {
		fmt.Fprintln(stderr, "injector uninject: flag -f is required (a file, or - for standard input)")
		return 2
	}
	in, err := webhook.New(webhook.Config{Defaults: webhook.RecommendedDefaults()})
	if err != nil {
		fmt.Fprintf(stderr, "injector uninject: %v\n", err)
		return 1
	}
	data, name, err := readManifests(*file, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "injector uninject: %v\n", err)
		return 1
	}
	res, err := editManifests(name, data, stderr, uninjectAction(in))
	if err != nil {
		fmt.Fprintf(stderr, "injector uninject: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(res.out); err != nil {
		fmt.Fprintf(stderr, "injector uninject: %v\n", err)
		return 1
	}
	return 0
}

func uninjectAction(in *webhook.Injector) podAction {
	return func(pod *corev1.Pod, _ string) (string, error) {
		removed, err := in.Uninject(pod)
		if err != nil || removed {
			return "", err
		}
		return "no " + wellknown.StatusAnnotation + " annotation: nothing to remove", nil
	}
}
