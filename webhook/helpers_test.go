package webhook

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/testutil/webhooktest"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

func labeledNamespace(name string) Namespace {
	return Namespace{Name: name, Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}
}

func newTestInjector(t testing.TB) *Injector {
	t.Helper()
	in, err := New(Config{Defaults: RecommendedDefaults(), InjectorNamespace: DefaultInjectorNamespace})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func pc0() *corev1.Pod                          { return webhooktest.PC0() }
func canonical(t testing.TB, raw []byte) string { return webhooktest.Canonical(t, raw) }
func mustJSON(t testing.TB, v any) []byte       { return webhooktest.MustJSON(t, v) }
