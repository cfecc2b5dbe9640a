package injectcmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"

	"github.com/tandem-mesh/tandem/internal/textdiff"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/manifests from the current output")

const corpus = "testdata/manifests"

// corpusFiles are the input manifests of testdata/manifests.
func corpusFiles(t testing.TB) []string {
	all, err := filepath.Glob(filepath.Join(corpus, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var inputs []string
	for _, p := range all {
		if !strings.Contains(filepath.Base(p), ".golden.") {
			inputs = append(inputs, p)
		}
	}
	if len(inputs) < 12 {
		t.Fatalf("only %d manifests in %s", len(inputs), corpus)
	}
	return inputs
}

// goldenNames: X.yaml gives X.golden.yaml (standard output) and
// X.golden.txt (standard error).
func goldenNames(input string) (out, notes string) {
	ext := filepath.Ext(input)
	base := strings.TrimSuffix(input, ext)
	return base + ".golden" + ext, base + ".golden.txt"
}

// TestInjectGolden runs `injector inject -f` on every manifest of the
// corpus and compares standard output and standard error, byte for byte,
// with the golden files.
func TestInjectGolden(t *testing.T) {
	inputs := corpusFiles(t)
	want := map[string]bool{}
	for _, in := range inputs {
		outFile, notesFile := goldenNames(in)
		want[outFile], want[notesFile] = true, true
		t.Run(filepath.Base(in), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Inject("injector", []string{"-f", in}, strings.NewReader(""), &stdout, &stderr)
			out, notes := stdout.String(), stderr.String()
			if code != 0 {
				t.Fatalf("exit %d: %s", code, notes)
			}
			for file, got := range map[string]string{outFile: out, notesFile: notes} {
				if *update {
					if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				golden, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("%v (run go test -run TestInjectGolden -update to create it)", err)
				}
				if got != string(golden) {
					t.Errorf("output differs from %s (run with -update to accept):\n%s", file, textdiff.Lines(string(golden), got))
				}
			}
		})
	}
	all, _ := filepath.Glob(filepath.Join(corpus, "*.golden.*"))
	for _, g := range all {
		if !want[g] {
			t.Errorf("%s belongs to no manifest of %s: remove it", g, corpus)
		}
	}
}

func defaultInjector(t testing.TB) *webhook.Injector {
	in, err := webhook.New(webhook.Config{Defaults: webhook.RecommendedDefaults()})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func edit(t testing.TB, data []byte, act podAction) edited {
	t.Helper()
	res, err := editManifests("test.yaml", data, io.Discard, act)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestInjectChangesOnlyWhatItMust checks, for every manifest of the
// corpus: an input without sidecars only gains text (every edit is an
// insertion); decoding the output gives exactly the pods the typed
// injection makes of the input's pods; injecting the output again changes
// nothing; and uninject gives back the input byte for byte.
func TestInjectChangesOnlyWhatItMust(t *testing.T) {
	in := defaultInjector(t)
	for _, file := range corpusFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			res := edit(t, src, injectAction(in))
			if res.lossy {
				t.Errorf("a null or empty value was filled: uninject cannot restore it; keep such shapes out of the corpus")
			}
			injectedBefore := bytes.Contains(src, []byte(wellknown.StatusAnnotation))
			for _, e := range res.edits {
				if !injectedBefore && e.End != e.Start {
					t.Errorf("an edit replaces input bytes %d..%d %q", e.Start, e.End, src[e.Start:e.End])
				}
			}

			want := decodePods(t, src)
			for i := range want {
				if _, err := injectAction(in)(want[i].pod, want[i].namespace); err != nil {
					t.Fatal(err)
				}
			}
			got := decodePods(t, res.out)
			if len(got) != len(want) {
				t.Fatalf("%d pods in the output, %d in the input", len(got), len(want))
			}
			for i := range want {
				if !equality.Semantic.DeepEqual(want[i].pod, got[i].pod) {
					w, _ := json.MarshalIndent(want[i].pod, "", " ")
					g, _ := json.MarshalIndent(got[i].pod, "", " ")
					t.Errorf("pod %d of the output is not the injected pod:\n%s", i, textdiff.Lines(string(w), string(g)))
				}
			}

			again := edit(t, res.out, injectAction(in))
			if len(again.edits) != 0 || !bytes.Equal(again.out, res.out) {
				t.Errorf("injecting the output again changed it:\n%s", textdiff.Lines(string(res.out), string(again.out)))
			}

			plain := edit(t, src, uninjectAction(in)).out
			back := edit(t, res.out, uninjectAction(in)).out
			if !bytes.Equal(back, plain) {
				t.Errorf("uninject(inject(x)) != uninject(x):\n%s", textdiff.Lines(string(plain), string(back)))
			}
			if !injectedBefore && !bytes.Equal(plain, src) {
				t.Errorf("uninject changed a manifest without sidecars:\n%s", textdiff.Lines(string(src), string(plain)))
			}
		})
	}
}

type decodedPod struct {
	pod       *corev1.Pod
	namespace string
}

// decodePods decodes the pods and pod templates of the workloads injection
// knows, the way kubectl reads a manifest, independently of the walker.
func decodePods(t *testing.T, data []byte) []decodedPod {
	t.Helper()
	var out []decodedPod
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var add func(obj map[string]any)
	add = func(obj map[string]any) {
		apiVersion, _ := obj["apiVersion"].(string)
		kind, _ := obj["kind"].(string)
		if kind == "List" {
			items, _ := obj["items"].([]any)
			for _, it := range items {
				if m, ok := it.(map[string]any); ok {
					add(m)
				}
			}
			return
		}
		path, ok := podTemplates[apiVersion+" "+kind]
		if !ok {
			return
		}
		meta, _ := obj["metadata"].(map[string]any)
		ns, _ := meta["namespace"].(string)
		cur := obj
		for _, k := range path {
			cur, _ = cur[k].(map[string]any)
		}
		if cur == nil {
			return
		}
		js, _ := json.Marshal(map[string]any{"metadata": cur["metadata"], "spec": cur["spec"]})
		pod := &corev1.Pod{}
		strict, err := sigsjson.UnmarshalStrict(js, pod)
		if err == nil && len(strict) > 0 {
			err = errors.Join(strict...)
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, decodedPod{pod, ns})
	}
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if obj != nil {
			add(obj)
		}
	}
}

// BenchmarkInjectManifests: the text edit's cost beside the typed
// injection, on a Helm chart's output and on kubectl's JSON.
func BenchmarkInjectManifests(b *testing.B) {
	in := defaultInjector(b)
	for _, name := range []string{"helm-rendered.yaml", "kubectl-list.json"} {
		src, err := os.ReadFile(filepath.Join(corpus, name))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := editManifests(name, src, io.Discard, injectAction(in)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
