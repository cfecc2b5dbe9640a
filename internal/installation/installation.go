// Package installation finds an install of Tandem in a cluster by the
// names every install uses (config/ and the Helm charts alike), and
// reaches its injector's pods through the API server with the caller's
// credentials.
package installation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-mesh/tandem/internal/podconn"
	"github.com/tandem-mesh/tandem/internal/statusapi"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Install is the injector of an install: its Deployment and pods.
type Install struct {
	Namespace  string
	Deployment *appsv1.Deployment
	// Pods are the Deployment's pods, ready ones first.
	Pods []corev1.Pod
}

// ErrNotInstalled is returned by Find when the namespace has no injector.
var ErrNotInstalled = errors.New("Tandem is not installed there")

// Find reads the injector of the install in namespace.
func Find(ctx context.Context, kube kubernetes.Interface, namespace string) (*Install, error) {
	dep, err := kube.AppsV1().Deployments(namespace).Get(ctx, wellknown.InjectorDeployment, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("no Deployment %s in namespace %s: %w (another namespace? use --tandem-namespace)", wellknown.InjectorDeployment, namespace, ErrNotInstalled)
	case err != nil:
		return nil, fmt.Errorf("reading Deployment %s/%s: %w", namespace, wellknown.InjectorDeployment, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("Deployment %s/%s: %w", namespace, dep.Name, err)
	}
	pods, err := kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing the injector's pods in namespace %s: %w", namespace, err)
	}
	in := &Install{Namespace: namespace, Deployment: dep, Pods: pods.Items}
	slices.SortStableFunc(in.Pods, func(a, b corev1.Pod) int {
		switch ra, rb := Ready(&a), Ready(&b); {
		case ra && !rb:
			return -1
		case rb && !ra:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return in, nil
}

// Ready reports whether pod is running and ready.
func Ready(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Running are the pods a port-forward can reach.
func (in *Install) Running() []corev1.Pod {
	var out []corev1.Pod
	for _, p := range in.Pods {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// container is the injector's container of the Deployment.
func (in *Install) container() *corev1.Container {
	cs := in.Deployment.Spec.Template.Spec.Containers
	if i := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == wellknown.InjectorContainer }); i >= 0 {
		return &cs[i]
	}
	if len(cs) > 0 {
		return &cs[0]
	}
	return nil
}

// Port is the injector's container port of that name.
func (in *Install) Port(name string) (int, bool) {
	if c := in.container(); c != nil {
		for _, p := range c.Ports {
			if p.Name == name {
				return int(p.ContainerPort), true
			}
		}
	}
	return 0, false
}

// Flag returns the value of the injector's flag --name, as the
// Deployment gives it ($(VAR) references are not expanded).
func (in *Install) Flag(name string) (string, bool) {
	c := in.container()
	if c == nil {
		return "", false
	}
	for _, a := range append(slices.Clone(c.Command), c.Args...) {
		for _, prefix := range []string{"--" + name + "=", "-" + name + "="} {
			if v, ok := strings.CutPrefix(a, prefix); ok {
				return v, true
			}
		}
		if a == "--"+name || a == "-"+name {
			return "true", true
		}
	}
	return "", false
}

// Image is the injector's image.
func (in *Install) Image() string {
	if c := in.container(); c != nil {
		return c.Image
	}
	return ""
}

// StatusTimeout bounds one request to a status endpoint.
const StatusTimeout = 20 * time.Second

// Replica asks the injector pod for its status through a port-forward.
// A refusal by RBAC comes back as an error apierrors.IsForbidden sees
// through podconn's wrapping only as text: see Forbidden.
func Replica(ctx context.Context, f *podconn.Forwarder, pod *corev1.Pod) (statusapi.Replica, *podconn.Tunnel, error) {
	s, err := f.Open(ctx, pod.Namespace, pod.Name)
	if err != nil {
		return statusapi.Replica{}, nil, err
	}
	r, err := statusapi.GetReplica(ctx, s.HTTPClient(wellknown.InjectorStatusPort, StatusTimeout))
	if err != nil {
		s.Close()
		return r, nil, fmt.Errorf("the status endpoint of injector pod %s (127.0.0.1:%d): %w", pod.Name, wellknown.InjectorStatusPort, err)
	}
	return r, s, nil
}

// Forbidden reports whether err is the API server refusing the caller.
func Forbidden(err error) bool {
	return err != nil && (apierrors.IsForbidden(err) || strings.Contains(err.Error(), "forbidden") || strings.Contains(err.Error(), "Forbidden"))
}
