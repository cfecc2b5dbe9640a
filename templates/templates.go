// Package templates holds the sidecar templates the injector renders into
// pods, and the code that loads and renders them. The built-in templates are
// embedded; an operator can replace them with a directory of their own.
//
// A template set is a directory of files: every "<name>.yaml" is a template
// selectable by the tandem.dev/template annotation, every "_*.tpl" holds
// shared definitions. Templates are Go text/templates executed with Values
// and must produce the YAML of a Sidecars object.
package templates

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"text/template"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Builtin holds the embedded templates: envoy.yaml, proxyless.yaml and their helpers.
//
//go:embed *.yaml *.tpl
var Builtin embed.FS

const (
	templateExt = ".yaml"
	helperExt   = ".tpl"
	// maxCached bounds the render cache; real clusters use a handful of
	// distinct value sets, so reaching it means churn and the cache restarts.
	maxCached = 512
)

// Set is a loaded set of templates with a cache of their renderings. It is
// safe for concurrent use.
type Set struct {
	templates map[string]*template.Template
	names     []string

	mu    sync.RWMutex
	cache map[cacheKey]*Rendered
}

type cacheKey struct {
	name   string
	values Values
}

// Default loads the built-in templates.
func Default() (*Set, error) { return Load(Builtin) }

// Load reads the templates at the top of fsys, parses them and renders each
// once with ExampleValues in both sidecar modes and both capture modes, so a broken template fails
// here rather than on the first pod.
func Load(fsys fs.FS) (*Set, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("reading templates: %w", err)
	}
	var helpers, mains []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.IsDir():
		case strings.HasPrefix(name, "_") && path.Ext(name) == helperExt:
			helpers = append(helpers, name)
		case !strings.HasPrefix(name, "_") && !strings.HasPrefix(name, ".") && path.Ext(name) == templateExt:
			mains = append(mains, name)
		}
	}
	if len(mains) == 0 {
		return nil, fmt.Errorf("no templates: expected files named <template>%s (and optional _<helpers>%s)", templateExt, helperExt)
	}
	base := template.New("").Option("missingkey=error")
	base.Funcs(funcs(base))
	for _, h := range helpers {
		if err := parseFile(base, fsys, h); err != nil {
			return nil, err
		}
	}
	s := &Set{templates: map[string]*template.Template{}, cache: map[cacheKey]*Rendered{}}
	for _, file := range mains {
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		// Functions bound to the clone, so include sees this template's definitions.
		t.Funcs(funcs(t))
		if err := parseFile(t, fsys, file); err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(file, templateExt)
		s.templates[name] = t.Lookup(file)
		s.names = append(s.names, name)
	}
	slices.Sort(s.names)
	for _, name := range s.names {
		for _, native := range []bool{true, false} {
			for _, capture := range []string{wellknown.CaptureInit, wellknown.CaptureCNI} {
				v := ExampleValues(native)
				v.Capture = capture
				if _, err := s.render(name, v); err != nil {
					return nil, err
				}
			}
		}
	}
	return s, nil
}

func parseFile(t *template.Template, fsys fs.FS, file string) error {
	data, err := fs.ReadFile(fsys, file)
	if err != nil {
		return fmt.Errorf("reading template %s: %w", file, err)
	}
	if _, err := t.New(file).Parse(string(data)); err != nil {
		return fmt.Errorf("parsing template %s: %w", file, err)
	}
	return nil
}

// Names lists the templates of the set, sorted.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Has reports whether the set has a template of that name.
func (s *Set) Has(name string) bool { _, ok := s.templates[name]; return ok }

// Render returns the named template rendered with v. Renderings are cached by
// template and values; the result is shared and must not be modified.
func (s *Set) Render(name string, v Values) (*Rendered, error) {
	v.Const = constants
	key := cacheKey{name: name, values: v}
	s.mu.RLock()
	r, ok := s.cache[key]
	s.mu.RUnlock()
	if ok {
		return r, nil
	}
	r, err := s.render(name, v)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.cache) >= maxCached {
		clear(s.cache)
	}
	s.cache[key] = r
	s.mu.Unlock()
	return r, nil
}

func (s *Set) render(name string, v Values) (*Rendered, error) {
	t, ok := s.templates[name]
	if !ok {
		return nil, fmt.Errorf("no template %q (have %s)", name, strings.Join(s.names, ", "))
	}
	v.Const = constants
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("template %q: %w", name, err)
	}
	var sc Sidecars
	err := yaml.UnmarshalStrict(buf.Bytes(), &sc)
	if err != nil {
		return nil, fmt.Errorf("template %q rendered invalid sidecars: %w\n%s", name, err, numbered(buf.Bytes()))
	}
	if err = check(&sc); err != nil {
		return nil, fmt.Errorf("template %q: %w", name, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	r := &Rendered{Template: name, Sidecars: sc, Hash: hex.EncodeToString(sum[:8]),
		ContainerJSON: map[string][]byte{}, VolumeJSON: map[string][]byte{}}
	for _, list := range [][]corev1.Container{sc.InitContainersFirst, sc.InitContainersLast, sc.ContainersFirst} {
		for i := range list {
			if r.ContainerJSON[list[i].Name], err = json.Marshal(&list[i]); err != nil {
				return nil, err
			}
		}
	}
	for i := range sc.Volumes {
		if r.VolumeJSON[sc.Volumes[i].Name], err = json.Marshal(&sc.Volumes[i]); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// check catches mistakes of custom templates that the API server would only
// report later, per pod, or that the offline injector would write out.
func check(sc *Sidecars) error {
	seen := map[string]bool{}
	for _, list := range [][]corev1.Container{sc.InitContainersFirst, sc.InitContainersLast, sc.ContainersFirst} {
		for _, c := range list {
			if c.Name == "" {
				return fmt.Errorf("a container has no name")
			}
			if c.Image == "" {
				return fmt.Errorf("container %q has no image", c.Name)
			}
			if seen[c.Name] {
				return fmt.Errorf("container name %q is used twice", c.Name)
			}
			seen[c.Name] = true
		}
	}
	volumes := map[string]bool{}
	for _, v := range sc.Volumes {
		if v.Name == "" {
			return fmt.Errorf("a volume has no name")
		}
		if volumes[v.Name] {
			return fmt.Errorf("volume name %q is used twice", v.Name)
		}
		volumes[v.Name] = true
	}
	for _, m := range sc.AppVolumeMounts {
		if !volumes[m.Name] {
			return fmt.Errorf("appVolumeMounts refers to volume %q, which the template does not add", m.Name)
		}
	}
	envs := map[string]bool{}
	for _, e := range sc.AppEnv {
		if e.Name == "" || envs[e.Name] {
			return fmt.Errorf("appEnv names must be set and unique, got %q", e.Name)
		}
		envs[e.Name] = true
	}
	return nil
}

func numbered(text []byte) string {
	var b strings.Builder
	for i, line := range strings.Split(string(text), "\n") {
		fmt.Fprintf(&b, "%4d  %s\n", i+1, line)
	}
	return b.String()
}

// funcs are the template functions; include needs the template it runs in.
func funcs(t *template.Template) template.FuncMap {
	return template.FuncMap{
		// toJSON renders a value as JSON, which YAML reads as a quoted
		// scalar or flow collection: the safe way to place any string.
		"toJSON": func(v any) (string, error) {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(v); err != nil {
				return "", err
			}
			return strings.TrimSuffix(b.String(), "\n"), nil
		},
		// include runs a named definition and returns its output, so it can be piped to indent.
		"include": func(name string, data any) (string, error) {
			var b bytes.Buffer
			err := t.ExecuteTemplate(&b, name, data)
			return b.String(), err
		},
		// indent prefixes every non-empty line with n spaces.
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			lines := strings.Split(s, "\n")
			for i, l := range lines {
				if l != "" {
					lines[i] = pad + l
				}
			}
			return strings.Join(lines, "\n")
		},
		// dict builds a map from key, value pairs, to pass several values to a definition.
		"dict": func(kv ...any) (map[string]any, error) {
			if len(kv)%2 != 0 {
				return nil, fmt.Errorf("dict needs key, value pairs, got %d arguments", len(kv))
			}
			m := make(map[string]any, len(kv)/2)
			for i := 0; i < len(kv); i += 2 {
				k, ok := kv[i].(string)
				if !ok {
					return nil, fmt.Errorf("dict key %v is not a string", kv[i])
				}
				m[k] = kv[i+1]
			}
			return m, nil
		},
	}
}
