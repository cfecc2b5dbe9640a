package templates

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

func TestBuiltin(t *testing.T) {
	s, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Names(); !slices.Equal(got, []string{"envoy", "proxyless"}) {
		t.Errorf("names %v", got)
	}
	if !s.Has("envoy") || s.Has("_helpers") || s.Has("istio") {
		t.Errorf("Has is wrong")
	}
	for _, name := range s.Names() {
		for _, native := range []bool{true, false} {
			r, err := s.Render(name, ExampleValues(native))
			if err != nil {
				t.Fatal(err)
			}
			sc := r.Sidecars
			for _, list := range [][]string{names(sc.InitContainersFirst), names(sc.InitContainersLast), names(sc.ContainersFirst)} {
				for _, n := range list {
					c := find(&sc, n)
					want, _ := json.Marshal(c)
					if string(r.ContainerJSON[n]) != string(want) {
						t.Errorf("%s/%v: ContainerJSON[%s] is not the container's JSON", name, native, n)
					}
				}
			}
			for i := range sc.Volumes {
				want, _ := json.Marshal(&sc.Volumes[i])
				if string(r.VolumeJSON[sc.Volumes[i].Name]) != string(want) {
					t.Errorf("%s/%v: VolumeJSON[%s] wrong", name, native, sc.Volumes[i].Name)
				}
			}
			if len(r.Hash) != 16 || r.Template != name {
				t.Errorf("%s/%v: hash %q template %q", name, native, r.Hash, r.Template)
			}
		}
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func find(sc *Sidecars, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{sc.InitContainersFirst, sc.InitContainersLast, sc.ContainersFirst} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func TestRenderCache(t *testing.T) {
	s, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	v := ExampleValues(true)
	a, _ := s.Render("envoy", v)
	b, _ := s.Render("envoy", v)
	if a != b {
		t.Errorf("equal values rendered twice instead of once")
	}
	v.LogLevel = "debug"
	c, _ := s.Render("envoy", v)
	if c == a || c.Hash == a.Hash {
		t.Errorf("other values gave the cached rendering")
	}
	// Const is the template's business: a caller's value is ignored.
	v2 := ExampleValues(true)
	v2.Const.ProxyContainer = "other"
	d, _ := s.Render("envoy", v2)
	if d != a {
		t.Errorf("Const from the caller changed the rendering")
	}
	for i := 0; i < maxCached+10; i++ {
		v := ExampleValues(false)
		v.WatchNamespaces = strings.Repeat("a", i+1)
		if _, err := s.Render("proxyless", v); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.cache); n > maxCached {
		t.Errorf("cache holds %d renderings, bound is %d", n, maxCached)
	}
	if _, err := s.Render("nope", v); err == nil || !strings.Contains(err.Error(), `no template "nope" (have envoy, proxyless)`) {
		t.Errorf("got %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		files map[string]string
		want  []string
	}{
		{map[string]string{"_helpers.tpl": "{{ define \"x\" }}{{ end }}"}, []string{"no templates"}},
		{map[string]string{"a.yaml": "containersFirst: {{ .Nope"}, []string{"parsing template a.yaml"}},
		{map[string]string{"a.yaml": "containers: []\n"}, []string{`template "a"`, `unknown field "containers"`, "   1  containers: []"}},
		{map[string]string{"a.yaml": "containersFirst:\n- image: x\n"}, []string{`template "a"`, "no name"}},
		{map[string]string{"a.yaml": "containersFirst:\n- name: a\n"}, []string{`container "a" has no image`}},
		{map[string]string{"a.yaml": "containersFirst:\n- {name: a, image: x}\ninitContainersLast:\n- {name: a, image: x}\n"}, []string{`"a" is used twice`}},
		{map[string]string{"a.yaml": "volumes:\n- name: v\n- name: v\n"}, []string{`volume name "v" is used twice`}},
		{map[string]string{"a.yaml": "appVolumeMounts:\n- {name: v, mountPath: /v}\n"}, []string{`refers to volume "v"`}},
		{map[string]string{"a.yaml": "appEnv:\n- name: A\n- name: A\n"}, []string{"appEnv names"}},
		{map[string]string{"a.yaml": "containersFirst:\n- name: a\n  image: {{ .NoSuchValue }}\n"}, []string{`template "a"`, "NoSuchValue"}},
		{map[string]string{"a.yaml": "{{ dict 1 2 }}"}, []string{"dict key 1 is not a string"}},
		{map[string]string{"a.yaml": "{{ dict \"a\" }}"}, []string{"key, value pairs"}},
	} {
		fsys := fstest.MapFS{}
		for name, text := range tc.files {
			fsys[name] = &fstest.MapFile{Data: []byte(text)}
		}
		_, err := Load(fsys)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: got %v, want an error with %q", tc.files, err, w)
			}
		}
	}
}

func TestHelpersAndFunctions(t *testing.T) {
	fsys := fstest.MapFS{
		"_shared.tpl": {Data: []byte(`{{ define "c" }}
- name: {{ .name }}
  image: {{ toJSON .image }}
  args: [{{ toJSON .arg }}]
{{- end }}`)},
		"one.yaml": {Data: []byte(`containersFirst:
{{- include "c" (dict "name" "x" "image" .ProxyImage "arg" "a \"quoted\" <value> & more") | indent 0 }}
`)},
		"README.md": {Data: []byte("not a template")},
	}
	s, err := Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Names(); !slices.Equal(got, []string{"one"}) {
		t.Errorf("names %v", got)
	}
	r, err := s.Render("one", ExampleValues(true))
	if err != nil {
		t.Fatal(err)
	}
	c := r.Sidecars.ContainersFirst[0]
	if c.Name != "x" || c.Image != "envoyproxy/envoy:example" || c.Args[0] != `a "quoted" <value> & more` {
		t.Errorf("rendered %+v", c)
	}
}

// With discovery, the agent gets its address, its CA and a token of
// discovery's audience; without, none of them.
func TestDiscoveryValues(t *testing.T) {
	s, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range s.Names() {
		for _, on := range []bool{true, false} {
			v := ExampleValues(true)
			if !on {
				v.DiscoveryAddress, v.DiscoveryCA = "", ""
			}
			r, err := s.Render(name, v)
			if err != nil {
				t.Fatal(err)
			}
			agent := find(&r.Sidecars, wellknown.AgentContainerName)
			hasArg := slices.Contains(agent.Args, "--discovery-address=tandem-discovery.tandem-system.svc:15012")
			hasCA := slices.ContainsFunc(agent.Env, func(e corev1.EnvVar) bool {
				return e.Name == wellknown.DiscoveryCAEnv && e.Value == ExampleValues(true).DiscoveryCA
			})
			hasToken := false
			for _, vol := range r.Sidecars.Volumes {
				if vol.Name != wellknown.TokenVolumeName || vol.Projected == nil {
					continue
				}
				for _, src := range vol.Projected.Sources {
					if t := src.ServiceAccountToken; t != nil && t.Audience == wellknown.DiscoveryAudience && t.Path == wellknown.DiscoveryTokenPath {
						hasToken = true
					}
				}
			}
			if hasArg != on || hasCA != on || hasToken != on {
				t.Errorf("%s, discovery %v: address argument %v, CA %v, token of audience %s %v; want all %v",
					name, on, hasArg, hasCA, wellknown.DiscoveryAudience, hasToken, on)
			}
		}
	}
}
