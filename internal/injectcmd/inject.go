package injectcmd

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

// Inject runs the inject command of program prog ("injector", "kubectl
// tandem") and returns its exit code.
func Inject(prog string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s inject -f FILE|- [flags]\n\n"+
			"Writes the manifests of FILE (YAML or JSON, several documents, List objects) to\n"+
			"standard output with Tandem's sidecars added to every Pod and pod template of\n"+
			"v1 Pod, PodTemplate and ReplicationController, apps/v1 Deployment, StatefulSet,\n"+
			"DaemonSet and ReplicaSet, batch/v1 Job and CronJob, OpenShift DeploymentConfig\n"+
			"and Argo Rollout, as the webhook would in a namespace labeled %s=%s.\n"+
			"Only what injection needs changes: every other byte comes out as it went in.\n"+
			"Standard error says why each other workload or pod was left alone, and counts\n"+
			"the objects that have no pod template by kind in one line. Manifests\n"+
			"injected before are injected again with the current settings, or lose their\n"+
			"sidecars when the pod is now opted out.\n\nFlags:\n", prog, wellknown.InjectLabel, wellknown.InjectLabelEnabled)
		fs.PrintDefaults()
	}
	var f Flags
	f.Bind(fs)
	file := fs.String("f", "", "manifest file, or - for standard input")
	native := fs.Bool("native-sidecar", true, "native sidecars (Kubernetes 1.29+) unless a pod's tandem.dev/native-sidecar annotation says otherwise")
	caFile := fs.String("discovery-ca", "", "PEM file of the CA that signed discovery's certificate (ca.crt of Secret tandem-webhook-cert);\n"+
		"with it injected agents follow discovery at --agent-discovery-address, without it they watch the API server")
	if code := ParseFlags(fs, args); code >= 0 {
		return code
	}
	if *file == "" {
		fmt.Fprintf(stderr, "%s inject: flag -f is required (a file, or - for standard input)\n", prog)
		return 2
	}
	if *caFile != "" {
		ca, err := readCA(*caFile)
		if err != nil {
			fmt.Fprintf(stderr, "%s inject: flag --discovery-ca=%q: %v\n", prog, *caFile, err)
			return 2
		}
		f.Defaults.DiscoveryCA = ca
	}
	in, err := f.Injector(*native)
	if err != nil {
		fmt.Fprintf(stderr, "%s inject: %v\n", prog, err)
		return 2
	}
	return editFile(prog+" inject", *file, stdin, stdout, stderr, injectAction(in))
}

// readCA reads a PEM file holding at least one certificate.
func readCA(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return "", errors.New("no PEM certificate in it (want the CA certificate, as in ca.crt)")
	}
	return string(b), nil
}

// injectAction injects a pod as the webhook would in a labeled namespace;
// a pod injected before that is now opted out loses its sidecars.
func injectAction(in *webhook.Injector) podAction {
	return func(pod *corev1.Pod, namespace string) (string, error) {
		ns := webhook.Namespace{Name: namespace, Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}
		res, err := in.Inject(pod, ns, webhook.Reinject)
		if err != nil {
			return "", err
		}
		var notes []string
		switch {
		case res.Uninjected:
			notes = append(notes, "not injected: "+res.Skipped+"; removed the sidecars of an earlier injection")
		case !res.Injected:
			notes = append(notes, "not injected: "+res.Skipped)
		}
		for _, w := range res.Warnings {
			notes = append(notes, "warning: "+w)
		}
		return strings.Join(notes, "; "), nil
	}
}

// Uninject runs the uninject command of program prog and returns its exit
// code.
func Uninject(prog string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("uninject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s uninject -f FILE|-\n\n"+
			"Writes the manifests of FILE to standard output with everything the %s\n"+
			"annotation of each pod and pod template lists removed, and the annotation:\n"+
			"the inverse of '%s inject'. The rest of the text is written as it came.\n\nFlags:\n", prog, wellknown.StatusAnnotation, prog)
		fs.PrintDefaults()
	}
	file := fs.String("f", "", "manifest file, or - for standard input")
	if code := ParseFlags(fs, args); code >= 0 {
		return code
	}
	if *file == "" {
		fmt.Fprintf(stderr, "%s uninject: flag -f is required (a file, or - for standard input)\n", prog)
		return 2
	}
	in, err := webhook.New(webhook.Config{Defaults: webhook.RecommendedDefaults()})
	if err != nil {
		fmt.Fprintf(stderr, "%s uninject: %v\n", prog, err)
		return 1
	}
	return editFile(prog+" uninject", *file, stdin, stdout, stderr, uninjectAction(in))
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
