package cniinstall

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzInsertRemove: whatever the file, an Insert that succeeds gives JSON
// with the entry last, is idempotent, and Remove undoes it to the bytes
// the file would have without any entry. Seeds: testdata/fuzz/FuzzInsertRemove.
func FuzzInsertRemove(f *testing.F) {
	entry := Entry(kubeconfigPath)
	f.Fuzz(func(t *testing.T, conflist []byte) {
		out, _, err := Insert(conflist, entry)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("Insert made invalid JSON of %q:\n%s", conflist, out)
		}
		elems, _, err := plugins(out)
		if err != nil || len(elems) == 0 || elems[len(elems)-1].typ != PluginType || countType(elems, PluginType) != 1 {
			t.Fatalf("Insert of %q: %s has not exactly one entry, last (%v)", conflist, out, err)
		}
		again, changed, err := Insert(out, entry)
		if err != nil || changed || !bytes.Equal(again, out) {
			t.Fatalf("Insert is not idempotent on %q: changed %v, %v", out, changed, err)
		}
		removed, _, err := Remove(out)
		if err != nil {
			t.Fatal(err)
		}
		clean, _, _ := Remove(conflist)
		if !bytes.Equal(removed, clean) {
			t.Fatalf("Remove(Insert(%q)) = %q, want %q", conflist, removed, clean)
		}
	})
}
