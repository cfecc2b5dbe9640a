package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// podSecurityAgainstAPIServer runs in TestServeAgainstAPIServer, with the
// webhook serving: in a namespace enforcing Pod Security "restricted" the
// API server's own Pod Security admission admits a CNI-mode pod, and the
// injector refuses an init-mode one with its message. A privileged pod
// the webhook leaves alone shows that Pod Security admission is on.
func podSecurityAgainstAPIServer(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "secure", Labels: map[string]string{
		"tandem.dev/inject": "enabled", "pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("secure").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	create := func(name string, labels, annotations map[string]string, sc *corev1.SecurityContext) (*corev1.Pod, error) {
		return cs.CoreV1().Pods("secure").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", SecurityContext: sc}}},
		}, metav1.CreateOptions{})
	}
	restricted := &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}

	_, err := create("privileged", map[string]string{"tandem.dev/inject": "false"}, nil,
		&corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}})
	if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("a NET_ADMIN pod in a restricted namespace: %v; want Pod Security admission's refusal (is it enabled?)", err)
	}
	p, err := create("cni", nil, map[string]string{"tandem.dev/capture": "cni"}, restricted)
	if err != nil {
		t.Fatalf("a CNI-mode pod in a restricted namespace: %v", err)
	}
	if got := names(p.Spec.InitContainers); !slices.Equal(got, []string{"tandem-validate", "tandem-agent", "tandem-proxy"}) {
		t.Errorf("CNI-mode pod: init containers %v", got)
	}
	_, err = create("init", nil, nil, restricted)
	if err == nil || !strings.Contains(err.Error(), `enforces Pod Security "restricted"`) || !strings.Contains(err.Error(), "tandem.dev/capture=cni") ||
		strings.Contains(err.Error(), "violates PodSecurity") {
		t.Errorf("an init-mode pod in a restricted namespace: %v; want the injector's refusal pointing to CNI mode", err)
	}
}
