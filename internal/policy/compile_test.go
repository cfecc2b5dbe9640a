package policy

import (
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tandem-mesh/tandem/templates"
	"github.com/tandem-mesh/tandem/webhook"
)

// Every text value a template can use is a setting the policy computes,
// or one of the bootstraps, which are the same for every pod.
func TestSettingsCoverValues(t *testing.T) {
	covered := map[uintptr]bool{}
	var v templates.Values
	base := reflect.ValueOf(&v).Elem()
	for _, s := range settings {
		covered[reflect.ValueOf(s.field(&v)).Pointer()] = true
	}
	covered[base.FieldByName("EnvoyBootstrap").Addr().Pointer()] = true
	covered[base.FieldByName("GRPCBootstrap").Addr().Pointer()] = true
	var walk func(rv reflect.Value, path string)
	walk = func(rv reflect.Value, path string) {
		switch rv.Kind() {
		case reflect.String:
			if !covered[rv.Addr().Pointer()] {
				t.Errorf("templates.Values%s is not a setting of the policy compiler", path)
			}
		case reflect.Struct:
			for i := 0; i < rv.NumField(); i++ {
				name := rv.Type().Field(i).Name
				if name == "Const" { // the same in every rendering
					continue
				}
				walk(rv.Field(i), path+"."+name)
			}
		case reflect.Bool:
			if path != ".NativeSidecar" {
				t.Errorf("templates.Values%s: a new switch must become a variant of the policy compiler", path)
			}
		default:
			t.Errorf("templates.Values%s: kind %s unknown to the policy compiler", path, rv.Kind())
		}
	}
	walk(base, "")
}

func injectorFor(t *testing.T, files fstest.MapFS) *webhook.Injector {
	t.Helper()
	set, err := templates.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	d := webhook.RecommendedDefaults()
	if !set.Has(d.Template) {
		d.Template = set.Names()[0]
	}
	in, err := webhook.New(webhook.Config{Templates: set, Defaults: d})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// A template set of one's own (--templates) compiles to its own variants.
func TestCompileCustomTemplates(t *testing.T) {
	in := injectorFor(t, fstest.MapFS{"tiny.yaml": {Data: []byte(`
containersFirst:
- name: tiny
  image: {{ toJSON .AgentImage }}
  args: [{{ toJSON (print "--level=" .LogLevel) }}{{ if .WatchNamespaces }}, {{ toJSON .WatchNamespaces }}{{ end }}]
`)}})
	p, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	var patches []string
	for _, m := range p.Mutating.Spec.Mutations {
		patches = append(patches, m.JSONPatch.Expression)
	}
	all := strings.Join(patches, "\n")
	for _, want := range []string{
		`variables.template == "tiny" && variables.native == true`,
		`variables.template == "tiny" && variables.native == false`,
		`image: string(variables.agentImage)`,
		`"--level=" + string(variables.sidecarLogLevel)`,
		`?((variables.watchNamespaces != "") ? optional.of(string(variables.watchNamespaces)) : optional.none())`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the patches lack %s:\n%s", want, all)
		}
	}
	if strings.Contains(all, "envoy") {
		t.Errorf("the patches mention the built-in templates:\n%s", all)
	}
}

// A template whose structure depends on a value in a way the policy cannot
// express is refused with the template's name.
func TestCompileRefusesValueDependentStructure(t *testing.T) {
	in := injectorFor(t, fstest.MapFS{"moody.yaml": {Data: []byte(`
containersFirst:
- name: moody
  image: {{ toJSON .AgentImage }}
  {{- if eq .LogLevel "debug" }}
  args: ["--verbose"]
  {{- end }}
`)}})
	_, err := Compile(in)
	if err == nil || !strings.Contains(err.Error(), `template "moody"`) {
		t.Fatalf("Compile: %v, want a refusal naming template \"moody\"", err)
	}
}
