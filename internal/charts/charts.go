// Package charts renders, lints and packages the project's Helm charts
// (charts/) with Helm's own Go packages, as `helm template`, `helm lint
// --strict` and `helm package` do, so tests and make targets need no helm
// binary and download nothing.
package charts

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	v2util "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Names of the charts under charts/.
var Names = []string{"tandem-crds", "tandem", "tandem-cni"}

// Release is what `helm install NAME CHART --namespace NAMESPACE` gives a render.
type Release struct {
	Name, Namespace string
	// Values as given with -f and --set, over the chart's values.yaml.
	Values map[string]any
	// KubeVersion of the cluster (default: Helm's).
	KubeVersion string
}

// Render renders the chart in dir as `helm template` does: values
// coalesced and checked against the chart's schema, templates rendered,
// NOTES.txt and partials left out, the objects in Helm's install order.
func Render(dir string, r Release) ([]*unstructured.Unstructured, error) {
	ch, err := loader.LoadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", dir, err)
	}
	return RenderChart(ch, r)
}

// RenderChart renders a loaded chart (see Render).
func RenderChart(ch *chart.Chart, r Release) ([]*unstructured.Unstructured, error) {
	if r.Name == "" {
		r.Name = ch.Name()
	}
	if r.Namespace == "" {
		r.Namespace = "default"
	}
	caps := common.DefaultCapabilities.Copy()
	if r.KubeVersion != "" {
		kv, err := common.ParseKubeVersion(r.KubeVersion)
		if err != nil {
			return nil, err
		}
		caps.KubeVersion = *kv
	}
	if ch.Metadata.KubeVersion != "" && !v2util.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart %s requires kubeVersion %s, incompatible with Kubernetes %s", ch.Name(), ch.Metadata.KubeVersion, caps.KubeVersion.Version)
	}
	values, err := chartutil.ToRenderValuesWithSchemaValidation(ch, r.Values,
		common.ReleaseOptions{Name: r.Name, Namespace: r.Namespace, Revision: 1, IsInstall: true}, caps, false)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", ch.Name(), err)
	}
	files, err := engine.Render(ch, values)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", ch.Name(), err)
	}
	for name := range files {
		if path.Base(name) == "NOTES.txt" {
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", ch.Name(), err)
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("chart %s: hook %s: the project's charts have no hooks", ch.Name(), hooks[0].Path)
	}
	var objs []*unstructured.Unstructured
	for _, m := range manifests {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(m.Content), &o); err != nil {
			return nil, fmt.Errorf("chart %s: %s: %w", ch.Name(), m.Name, err)
		}
		if o == nil {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: o})
	}
	return objs, nil
}

// Lint runs Helm's chart linter as `helm lint --strict` does: every
// warning is an error. It returns every message at or above info, and an
// error listing the failures.
func Lint(dir, namespace string, values map[string]any) ([]support.Message, error) {
	l := lint.RunAll(dir, values, namespace)
	var failed []string
	for _, m := range l.Messages {
		if m.Severity >= support.WarningSev {
			failed = append(failed, m.Error())
		}
	}
	if len(failed) > 0 {
		return l.Messages, errors.New(strings.Join(failed, "\n"))
	}
	return l.Messages, nil
}

// Package writes the chart in dir as NAME-VERSION.tgz into out, as `helm
// package --version V --app-version A` does; empty versions keep
// Chart.yaml's. It returns the archive's path.
func Package(dir, out, version, appVersion string) (string, error) {
	ch, err := loader.LoadDir(dir)
	if err != nil {
		return "", fmt.Errorf("loading chart %s: %w", dir, err)
	}
	if version != "" {
		ch.Metadata.Version = strings.TrimPrefix(version, "v")
	}
	if appVersion != "" {
		ch.Metadata.AppVersion = appVersion
	}
	if err := ch.Validate(); err != nil {
		return "", fmt.Errorf("chart %s: %w", dir, err)
	}
	return v2util.Save(ch, out)
}

// ValuesFiles lists the values files a chart ships besides values.yaml
// (values-*.yaml), after "" for the defaults alone.
func ValuesFiles(dir string) ([]string, error) {
	extra, err := filepath.Glob(filepath.Join(dir, "values-*.yaml"))
	return append([]string{""}, extra...), err
}

// LintWith lints the chart in dir (as Lint, in namespace tandem-system)
// with the values of file over its defaults ("": the defaults alone).
func LintWith(dir, file string) ([]support.Message, error) {
	values := map[string]any{}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		if err := yaml.Unmarshal(b, &values); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	return Lint(dir, "tandem-system", values)
}
