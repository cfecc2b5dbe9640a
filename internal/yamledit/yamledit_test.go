package yamledit

import (
	"strings"
	"testing"

	"github.com/tandem-mesh/tandem/internal/textdiff"
)

func reconcile(t *testing.T, src, old, new string) (string, *Doc) {
	t.Helper()
	d, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Reconcile(d.Root(), []byte(old), []byte(new)); err != nil {
		t.Fatal(err)
	}
	return string(Apply([]byte(src), d.Edits())), d
}

func TestReconcile(t *testing.T) {
	for _, tc := range []struct {
		name, src, old, new, want string
		lossy                     bool
	}{{
		name: "a key after a trailing comment, an item before the comment that introduces the next",
		src:  "a: 1 # one\nlist:\n  # the first\n  - x\n",
		old:  `{"a":1,"list":["x"]}`,
		new:  `{"a":1,"list":["new","x"],"b":{"c":"on"}}`,
		want: "a: 1 # one\nlist:\n  - new\n  # the first\n  - x\nb:\n  c: \"on\"\n",
	}, {
		name: "after a block scalar that keeps its blank lines",
		src:  "s: |+\n  text\n\nt: 1\n",
		old:  `{"s":"text\n\n","t":1}`,
		new:  `{"s":"text\n\n","t":1,"u":2}`,
		want: "s: |+\n  text\n\nt: 1\nu: 2\n",
	}, {
		name: "an item appended after a block scalar",
		src:  "l:\n- |\n  a\n  b\n# end\n",
		old:  `{"l":["a\nb\n"]}`,
		new:  `{"l":["a\nb\n","c"]}`,
		want: "l:\n- |\n  a\n  b\n- c\n# end\n",
	}, {
		name: "the first key of a sequence item removed",
		src:  "l:\n- a: 1\n  b: 2\n",
		old:  `{"l":[{"a":1,"b":2}]}`,
		new:  `{"l":[{"b":2}]}`,
		want: "l:\n- b: 2\n",
	}, {
		name: "pretty JSON keeps its layout",
		src:  "{\n  \"l\": [\n    1\n  ]\n}",
		old:  `{"l":[1]}`,
		new:  `{"l":[1,{"k":"v"}],"m":true}`,
		want: "{\n  \"l\": [\n    1,\n    {\n      \"k\": \"v\"\n    }\n  ],\n  \"m\": true\n}",
	}, {
		name: "flow entries removed with their commas",
		src:  "{a: [1, 2, 3, 4], b: {c: 1, d: 2}}\n",
		old:  `{"a":[1,2,3,4],"b":{"c":1,"d":2}}`,
		new:  `{"a":[1,4],"b":{"c":1}}`,
		want: "{a: [1, 4], b: {c: 1}}\n",
	}, {
		name: "a mapping emptied by the removal goes with its key",
		src:  "m:\n  only: 1\nn: 2\n",
		old:  `{"m":{"only":1},"n":2}`,
		new:  `{"m":{},"n":2}`,
		want: "n: 2\n",
	}, {
		name:  "a null value filled (lossy)",
		src:   "env:\nx: 1\n",
		old:   `{"x":1}`,
		new:   `{"env":[{"name":"A"}],"x":1}`,
		want:  "env:\n- name: A\nx: 1\n",
		lossy: true,
	}, {
		name: "CRLF, four-space indentation, and still no final line break",
		src:  "a:\r\n    b: 1",
		old:  `{"a":{"b":1}}`,
		new:  `{"a":{"b":1,"c":{"d":2}}}`,
		want: "a:\r\n    b: 1\r\n    c:\r\n        d: 2",
	}} {
		got, d := reconcile(t, tc.src, tc.old, tc.new)
		if got != tc.want {
			t.Errorf("%s:\n%s\ngot:\n%s", tc.name, textdiff.Lines(tc.want, got), got)
		}
		if d.Lossy() != tc.lossy {
			t.Errorf("%s: lossy %v, want %v", tc.name, d.Lossy(), tc.lossy)
		}
	}
}

func TestReconcileRefuses(t *testing.T) {
	for _, tc := range []struct{ src, old, new, want string }{
		{"a: &x [1]\nb: *x\n", `{"a":[1],"b":[1]}`, `{"a":[1,2],"b":[1]}`, "line 1: a carries the anchor &x"},
		{"a: &x [1]\nb: *x\n", `{"a":[1],"b":[1]}`, `{"a":[1],"b":[1,2]}`, "line 2: b is the alias *x"},
		{"l: [a, b]\n", `{"l":["a","b"]}`, `{"l":["b","a"]}`, "l: the items changed order"},
	} {
		d, err := Parse([]byte(tc.src))
		if err != nil {
			t.Fatal(err)
		}
		err = d.Reconcile(d.Root(), []byte(tc.old), []byte(tc.new))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
		if len(d.Edits()) != 0 {
			t.Errorf("%q: edits left after an error: %v", tc.src, d.Edits())
		}
	}
}
