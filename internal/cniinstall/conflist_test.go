package cniinstall

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tandem-mesh/tandem/internal/testutil/golden"
	"github.com/tandem-mesh/tandem/internal/textdiff"
)

const kubeconfigPath = "/etc/cni/net.d/tandem-cni.kubeconfig"

// TestConflistGolden installs into conflists shaped like those of common
// CNIs: the result is pinned by a golden file, keeps every other byte and
// plugin, installing again changes nothing, and removing gives back the
// original bytes.
func TestConflistGolden(t *testing.T) {
	d := golden.New(t, filepath.Join("testdata", "conflist"))
	cases := d.Cases(t, ".conflist")
	if len(cases) < 5 {
		t.Fatalf("found %d conflists, want the five shapes", len(cases))
	}
	entry := Entry(kubeconfigPath)
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			orig := d.Read(t, name+".conflist")
			got, changed, err := Insert(orig, entry)
			if err != nil || !changed {
				t.Fatalf("Insert: changed %v, %v", changed, err)
			}
			d.Check(t, name+".installed", got)
			checkSemantics(t, orig, got)

			again, changed, err := Insert(got, entry)
			if err != nil || changed || !bytes.Equal(again, got) {
				t.Errorf("Insert into an installed conflist: changed %v, %v", changed, err)
			}
			removed, changed, err := Remove(got)
			if err != nil || !changed || !bytes.Equal(removed, orig) {
				t.Errorf("Remove: changed %v, %v; the bytes differ from the original:\n%s", changed, err, textdiff.Lines(string(orig), string(removed)))
			}
			if _, changed, _ := Remove(orig); changed {
				t.Error("Remove changed a conflist without the entry")
			}
			// A new kubeconfig path replaces the entry: still one, still last.
			moved, changed, err := Insert(got, Entry("/elsewhere/tandem-cni.kubeconfig"))
			if err != nil || !changed {
				t.Fatalf("Insert of another entry: changed %v, %v", changed, err)
			}
			checkSemantics(t, orig, moved)
			if bytes.Contains(moved, []byte(kubeconfigPath)) {
				t.Error("the old entry is still there")
			}
		})
	}
}

// checkSemantics decodes both files: installed must be orig plus one
// tandem-cni entry at the end of the plugins.
func checkSemantics(t *testing.T, orig, installed []byte) {
	t.Helper()
	var o, i map[string]any
	if err := json.Unmarshal(orig, &o); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(installed, &i); err != nil {
		t.Fatalf("the installed conflist is not JSON: %v\n%s", err, installed)
	}
	op, ip := o["plugins"].([]any), i["plugins"].([]any)
	if len(ip) != len(op)+1 || ip[len(ip)-1].(map[string]any)["type"] != PluginType {
		t.Fatalf("plugins %v: want the original %d and tandem-cni last", ip, len(op))
	}
	i["plugins"] = ip[:len(op)]
	if !reflect.DeepEqual(o, i) {
		t.Errorf("the installed conflist changed something else:\n%v\nvs\n%v", o, i)
	}
}

// TestInsertMovesTheEntryLast: a primary that appended a plugin after
// Tandem's gets Tandem's moved back to the end.
func TestInsertMovesTheEntryLast(t *testing.T) {
	in := []byte(`{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"ptp"},` + string(Entry(kubeconfigPath)) + `,{"type":"portmap"}]}`)
	got, changed, err := Insert(in, Entry(kubeconfigPath))
	want := `{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"ptp"},{"type":"portmap"},` + string(Entry(kubeconfigPath)) + `]}`
	if err != nil || !changed || string(got) != want {
		t.Errorf("Insert = %s, %v, %v; want %s", got, changed, err, want)
	}
}

func TestConflistErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"name":"n","type":"bridge"}`, `no "plugins" array: not a conflist`},
		{`{"name":"n","plugins":[]}`, "no primary plugin"},
		{`{"name":"n","plugins":{}}`, `"plugins" is not an array`},
		{`{"plugins":[1]}`, "plugin 1 is not an object"},
		{`[]`, "not a JSON object"},
		{`{"plugins":[{"type":"ptp"}`, "not JSON"},
	} {
		if _, _, err := Insert([]byte(tc.in), Entry(kubeconfigPath)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Insert(%s): %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}
