package golden

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// fakeT records failures instead of failing the test that runs it.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true }
func (f *fakeT) Fatal(...any)          { f.failed = true }

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.out"), []byte("one\ntwo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &Dir{dir: dir, used: map[string]bool{}}
	for _, tc := range []struct {
		name, file, got string
		wantFail        bool
	}{
		{"equal", "a.out", "one\ntwo\n", false},
		{"different", "a.out", "one\nthree\n", true},
		{"empty output, file exists", "a.out", "", true},
		{"missing file", "b.out", "x", true},
		{"empty output, no file", "c.out", "", false},
	} {
		ft := &fakeT{TB: t}
		d.Check(ft, tc.file, []byte(tc.got))
		if ft.failed != tc.wantFail {
			t.Errorf("%s: failed = %v, want %v", tc.name, ft.failed, tc.wantFail)
		}
	}
}

func TestOrphans(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"in.yaml", "in.out", "stale.out"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := &Dir{dir: dir, used: map[string]bool{}}
	if got := d.Cases(t, ".yaml"); !slices.Equal(got, []string{"in"}) {
		t.Errorf("Cases = %q, want [in]", got)
	}
	d.Read(t, "in.yaml")
	d.Check(&fakeT{TB: t}, "in.out", []byte("x"))
	got, err := d.orphans()
	if err != nil || !slices.Equal(got, []string{"stale.out"}) {
		t.Errorf("orphans = %q, %v; want [stale.out]", got, err)
	}
}
