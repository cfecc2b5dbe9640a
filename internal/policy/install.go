package policy

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Install creates the policies, their bindings and the ConfigMap of
// defaults, for tests, measurements and the demo, which have no kubectl.
// The ConfigMap's namespace must exist. The API server starts enforcing
// the policies a moment later, not when Install returns.
func Install(ctx context.Context, cs kubernetes.Interface, p *Policies) error {
	ar := cs.AdmissionregistrationV1()
	type step struct {
		what string
		do   func() error
	}
	steps := []step{
		{"ConfigMap " + p.Params.Name, func() error {
			_, err := cs.CoreV1().ConfigMaps(p.Params.Namespace).Create(ctx, p.Params, metav1.CreateOptions{})
			return err
		}},
		{"MutatingAdmissionPolicy " + p.Mutating.Name, func() error {
			_, err := ar.MutatingAdmissionPolicies().Create(ctx, p.Mutating, metav1.CreateOptions{})
			return err
		}},
		{"ValidatingAdmissionPolicy " + p.Validating.Name, func() error {
			_, err := ar.ValidatingAdmissionPolicies().Create(ctx, p.Validating, metav1.CreateOptions{})
			return err
		}},
	}
	for _, b := range p.MutatingBindings {
		steps = append(steps, step{"MutatingAdmissionPolicyBinding " + b.Name, func() error {
			_, err := ar.MutatingAdmissionPolicyBindings().Create(ctx, b, metav1.CreateOptions{})
			return err
		}})
	}
	for _, b := range p.ValidatingBindings {
		steps = append(steps, step{"ValidatingAdmissionPolicyBinding " + b.Name, func() error {
			_, err := ar.ValidatingAdmissionPolicyBindings().Create(ctx, b, metav1.CreateOptions{})
			return err
		}})
	}
	for _, s := range steps {
		if err := s.do(); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s: %w", s.what, err)
		}
	}
	return nil
}
