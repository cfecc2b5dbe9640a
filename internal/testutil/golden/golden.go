// Package golden compares test output with files kept in a testdata
// directory, rewrites them on request, and fails when a file in that
// directory is used by no test case.
//
// One directory of cases, its files read and compared through a Dir:
//
//	func TestGolden(t *testing.T) {
//		d := golden.New(t, filepath.Join("testdata", "golden"))
//		for _, name := range d.Cases(t, ".yaml") { // every <case>.yaml
//			t.Run(name, func(t *testing.T) {
//				in := d.Read(t, name+".yaml")
//				d.Check(t, name+".out.json", render(in))
//			})
//		}
//	}
//
// `go test -update` rewrites every golden file Check is given (and removes
// the file when the output is empty), for review in the diff. The flag is
// registered here, once for every package that uses golden files; a test
// binary that imports this package must not define its own -update.
//
// When the test ends, every regular file directly in the directory must
// have been read (Read) or compared (Check) by some case; one that was not
// is an orphan — a stale output, or an input no case runs — and fails the
// test. The check is left out when -run or -skip selects subtests (a
// pattern with "/"), or when the test failed already, since then not
// every case ran.
package golden

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tandem-mesh/tandem/internal/textdiff"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current output")

// Updating reports whether the test runs with -update.
func Updating() bool { return *update }

// Dir is one testdata directory of golden files, owned by one test.
type Dir struct {
	dir string

	mu   sync.Mutex
	used map[string]bool
}

// New returns the golden directory dir (relative to the package) for t and
// registers the orphan check to run when t and its subtests have finished.
func New(t *testing.T, dir string) *Dir {
	t.Helper()
	d := &Dir{dir: dir, used: map[string]bool{}}
	t.Cleanup(func() {
		if t.Failed() || subtestsSelected() {
			return
		}
		orphans, err := d.orphans()
		if err != nil {
			t.Error(err)
			return
		}
		for _, o := range orphans {
			t.Errorf("%s is used by no test case: delete it, or add the case it belongs to", filepath.Join(dir, o))
		}
	})
	return d
}

// Cases returns the names of the files in the directory that end in
// suffix, without the suffix, sorted: one per case.
func (d *Dir) Cases(t testing.TB, suffix string) []string {
	t.Helper()
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), suffix); ok && e.Type().IsRegular() {
			names = append(names, name)
		}
	}
	return names
}

// Path is the path of the file name in the directory.
func (d *Dir) Path(name string) string { return filepath.Join(d.dir, name) }

// Read returns the content of the file name, an input of a case.
func (d *Dir) Read(t testing.TB, name string) []byte {
	t.Helper()
	d.use(name)
	b, err := os.ReadFile(d.Path(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Check fails t unless got equals the golden file name, showing the lines
// that differ. An empty got means the file must not exist. With -update it
// writes got to the file instead (removes the file when got is empty).
func (d *Dir) Check(t testing.TB, name string, got []byte) {
	t.Helper()
	d.use(name)
	path := d.Path(name)
	if *update {
		if len(got) == 0 {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			return
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && len(got) == 0:
		return
	case errors.Is(err, os.ErrNotExist):
		t.Fatalf("%s does not exist (go test -update creates it from the current output)", path)
	case err != nil:
		t.Fatal(err)
	case len(got) == 0:
		t.Errorf("%s exists but the output is empty (go test -update removes it)", path)
	case !bytes.Equal(got, want):
		t.Errorf("%s differs from the output (go test -update rewrites it; review the diff):\n%s",
			path, textdiff.Lines(string(want), string(got)))
	}
}

func (d *Dir) use(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.used[name] = true
}

// orphans lists the regular files of the directory no case used.
func (d *Dir) orphans() ([]string, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && !d.used[e.Name()] {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// subtestsSelected reports whether -run or -skip may leave out some
// subtests, so that not every case ran.
func subtestsSelected() bool {
	for _, name := range []string{"test.run", "test.skip"} {
		if f := flag.Lookup(name); f != nil && strings.Contains(f.Value.String(), "/") {
			return true
		}
	}
	return false
}
