package installation

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestFlagAndPort(t *testing.T) {
	in := &Install{Deployment: &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		Containers: []corev1.Container{
			{Name: "sidecar", Args: []string{"--capture=init"}},
			{Name: "injector", Image: "registry.example/injector:1", Args: []string{"serve", "--capture=cni", "--leader-elect", "-cert-dir=/certs"},
				Ports: []corev1.ContainerPort{{Name: "webhook", ContainerPort: 9443}}},
		}}}}}}
	for flag, want := range map[string]string{"capture": "cni", "leader-elect": "true", "cert-dir": "/certs"} {
		if got, ok := in.Flag(flag); !ok || got != want {
			t.Errorf("--%s: %q %v, want %q", flag, got, ok, want)
		}
	}
	if _, ok := in.Flag("webhook"); ok {
		t.Error("--webhook found, the args have none")
	}
	if p, ok := in.Port("webhook"); !ok || p != 9443 || in.Image() != "registry.example/injector:1" {
		t.Errorf("port %d %v, image %s", p, ok, in.Image())
	}
	if _, ok := in.Port("discovery"); ok {
		t.Error("a discovery port the container does not declare")
	}
}
