package resource_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/tandem-mesh/tandem/internal/discovery/discoverypb"
	"github.com/tandem-mesh/tandem/internal/discovery/resource"
	"github.com/tandem-mesh/tandem/internal/textdiff"
	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/objects"
)

// Every golden case of the translator, read from the API server's objects
// or from discovery's resources (encoded and decoded as on the wire), must
// translate to the same xDS configuration in both modes.
func TestGoldenCasesTranslateAlike(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "xds", "testdata", "golden", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 15 {
		t.Fatalf("found %d golden cases of the translator, want at least 15", len(paths))
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			in, _, err := objects.Read(f, path)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := resource.FromInputs(in)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range rs {
				b, err := proto.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				rs[i] = &pb.Service{}
				if err := proto.Unmarshal(b, rs[i]); err != nil {
					t.Fatal(err)
				}
			}
			back, err := resource.ToInputs(rs)
			if err != nil {
				t.Fatal(err)
			}
			// The locality the golden cases are written for.
			in.Local = xds.Locality{Node: "node-a", Zone: "zone-a", Namespace: "client"}
			back.Local = in.Local
			for _, mode := range []xds.Mode{xds.Sidecar, xds.Proxyless} {
				want := translateJSON(t, in, mode)
				got := translateJSON(t, back, mode)
				if want != got {
					t.Errorf("%v: discovery's resources translate differently:\n%s", mode, textdiff.Lines(want, got))
				}
			}
		})
	}
}

func translateJSON(t *testing.T, in xds.Inputs, mode xds.Mode) string {
	t.Helper()
	res, _ := xds.Translate(in, mode)
	b, err := res.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
