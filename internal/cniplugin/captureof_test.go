//go:build linux

package cniplugin

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

func TestCaptureOf(t *testing.T) {
	validate := func(args ...string) []corev1.Container {
		return []corev1.Container{{Name: wellknown.ValidateContainerName, Args: args}}
	}
	const cniStatus = `{"template":"envoy","initContainers":["tandem-validate"],"someFutureField":1}`
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		init        []corev1.Container
		wantCNI     bool
		wantPorts   []uint16
		wantErr     string
	}{
		{name: "not injected", init: validate()},
		{name: "init mode", annotations: map[string]string{wellknown.StatusAnnotation: `{"initContainers":["tandem-init"]}`},
			init: []corev1.Container{{Name: wellknown.InitContainerName}}},
		{name: "cni mode", annotations: map[string]string{wellknown.StatusAnnotation: cniStatus},
			init: validate("--exclude-outbound-ports=8080,9090"), wantCNI: true, wantPorts: []uint16{8080, 9090}},
		{name: "listed but absent", annotations: map[string]string{wellknown.StatusAnnotation: cniStatus},
			wantErr: "lists the init container tandem-validate, which the pod does not have"},
		{name: "bad arguments", annotations: map[string]string{wellknown.StatusAnnotation: cniStatus},
			init: validate("--exclude-outbound-ports=0"), wantErr: `invalid --exclude-outbound-ports "0"`},
		{name: "unknown flag", annotations: map[string]string{wellknown.StatusAnnotation: cniStatus},
			init: validate("--bogus"), wantErr: "flag provided but not defined: -bogus"},
		{name: "bad status", annotations: map[string]string{wellknown.StatusAnnotation: `{`},
			wantErr: "is not the injector's status JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: tc.annotations}, Spec: corev1.PodSpec{InitContainers: tc.init}}
			cfg, cni, err := CaptureOf(pod)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || cni != tc.wantCNI || !slices.Equal(cfg.ExcludePorts, tc.wantPorts) {
				t.Fatalf("CaptureOf = ports %v, cni %v, %v; want %v, %v", cfg.ExcludePorts, cni, err, tc.wantPorts, tc.wantCNI)
			}
			if cni && cfg.ProxyPort != wellknown.ProxyOutboundPort {
				t.Errorf("proxy port %d, want the default %d", cfg.ProxyPort, wellknown.ProxyOutboundPort)
			}
		})
	}
}
