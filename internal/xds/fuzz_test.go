package xds_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/objects"
)

// FuzzTranslate feeds arbitrary files through the path of `agent config`:
// reading objects, translating them in both modes, rendering. Whatever the
// input, nothing panics, every published resource validates, the snapshot
// is consistent, and the incremental endpoints agree with the full
// translation. Seeds: the golden inputs and testdata/fuzz/FuzzTranslate.
func FuzzTranslate(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.yaml"))
	for _, path := range inputs {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, _, err := objects.Read(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		in.Local = goldenClient
		for _, mode := range modes {
			res, _ := xds.Translate(in, mode)
			for _, r := range all(res) {
				if err := xds.Validate(r); err != nil {
					t.Fatalf("%v: published resource fails validation: %v", mode, err)
				}
			}
			if _, err := res.JSON(); err != nil {
				t.Fatalf("%v: rendering: %v", mode, err)
			}
			snapshot(t, res)
			checkIncrementalEndpoints(t, in, mode, res)
		}
	})
}
