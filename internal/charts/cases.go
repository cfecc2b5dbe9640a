package charts

import (
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// Case is one render of a chart the project tests: golden files, the API
// server's acceptance, the installed injector.
type Case struct {
	Name, Chart string
	// Files are values files of the chart (-f), Values YAML over them.
	Files  []string
	Values string
}

// Cases: every injection mode × capture mode, the defaults (the injector's
// own certificate), cert-manager in both modes, HA, and the other charts'
// defaults.
var Cases = []Case{
	{Name: "tandem-defaults", Chart: "tandem"},
	{Name: "tandem-webhook-cni", Chart: "tandem", Values: "capture: {mode: cni}"},
	{Name: "tandem-webhook-certmanager", Chart: "tandem", Values: "certManager: {enabled: true}"},
	{Name: "tandem-policy-init", Chart: "tandem", Values: "injection: {mode: policy}"},
	{Name: "tandem-policy-cni", Chart: "tandem", Values: "injection: {mode: policy}\ncapture: {mode: cni}"},
	{Name: "tandem-policy-certmanager", Chart: "tandem", Values: "injection: {mode: policy}\ncertManager: {enabled: true}"},
	{Name: "tandem-ha", Chart: "tandem", Files: []string{"values-ha.yaml"}},
	{Name: "tandem-crds-defaults", Chart: "tandem-crds"},
	{Name: "tandem-cni-defaults", Chart: "tandem-cni"},
}

// ValuesIn returns the case's values, its files read from the chart in root/charts.
func (c Case) ValuesIn(root string) (map[string]any, error) {
	v := map[string]any{}
	for _, f := range append(c.Files, "") {
		b := []byte(c.Values)
		if f != "" {
			var err error
			if b, err = os.ReadFile(filepath.Join(root, "charts", c.Chart, f)); err != nil {
				return nil, err
			}
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		v = mergeMaps(v, m)
	}
	return v, nil
}

// Namespace is the case's release namespace when the project installs into
// ns: tandem-cni goes to kube-system.
func (c Case) Namespace(ns string) string {
	if c.Chart == "tandem-cni" {
		return "kube-system"
	}
	return ns
}

// mergeMaps merges b over a as Helm merges values files.
func mergeMaps(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bv, ok := v.(map[string]any); ok {
			if av, ok := out[k].(map[string]any); ok {
				out[k] = mergeMaps(av, bv)
				continue
			}
		}
		out[k] = v
	}
	return out
}
