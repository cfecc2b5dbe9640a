package injectcmd

import (
	"bytes"
	"io"
	"testing"
)

// FuzzInjectManifests: whatever the manifest, injection's output parses,
// injecting it again changes nothing, and uninjecting it gives what
// uninjecting the input gives (unless a null or empty value was filled,
// which uninject cannot tell from an absent one). Seeds are in
// testdata/fuzz/FuzzInjectManifests.
func FuzzInjectManifests(f *testing.F) {
	in := defaultInjector(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := editManifests("fuzz", data, io.Discard, injectAction(in))
		if err != nil {
			return
		}
		again, err := editManifests("fuzz", res.out, io.Discard, injectAction(in))
		if err != nil {
			t.Fatalf("injecting the output again fails: %v\ninput:\n%s\noutput:\n%s", err, data, res.out)
		}
		if !bytes.Equal(again.out, res.out) {
			t.Fatalf("injecting the output again changes it\ninput:\n%s\noutput:\n%s\nagain:\n%s", data, res.out, again.out)
		}
		plain, err := editManifests("fuzz", data, io.Discard, uninjectAction(in))
		if err != nil {
			return
		}
		back, err := editManifests("fuzz", res.out, io.Discard, uninjectAction(in))
		if err != nil {
			t.Fatalf("uninjecting the output fails: %v\noutput:\n%s", err, res.out)
		}
		if !res.lossy && !bytes.Equal(back.out, plain.out) {
			t.Fatalf("uninject(inject(x)) != uninject(x)\ninput:\n%s\nuninjected output:\n%s", data, back.out)
		}
	})
}
