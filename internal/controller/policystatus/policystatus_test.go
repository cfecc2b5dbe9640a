package policystatus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/controller/policystatus"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/xds"
)

func TestStatusFollowsTargetService(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	testenv.StartManager(t, cfg, manager.Options{}, func(mgr ctrl.Manager) error {
		return (&policystatus.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr)
	})
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}

	// expect waits until policy name has the two conditions with these reasons.
	expect := func(name, acceptedReason, targetReason string) *v1alpha1.TrafficPolicy {
		t.Helper()
		var tp v1alpha1.TrafficPolicy
		poll.Eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: name}, &tp); err != nil {
				return err
			}
			a := meta.FindStatusCondition(tp.Status.Conditions, "Accepted")
			f := meta.FindStatusCondition(tp.Status.Conditions, "TargetFound")
			if a == nil || f == nil || a.Reason != acceptedReason || f.Reason != targetReason {
				return fmt.Errorf("policy %s conditions %+v, want Accepted=%s TargetFound=%s", name, tp.Status.Conditions, acceptedReason, targetReason)
			}
			if a.ObservedGeneration != tp.Generation {
				return fmt.Errorf("Accepted observedGeneration %d, policy generation %d", a.ObservedGeneration, tp.Generation)
			}
			return nil
		})
		return &tp
	}

	cartPolicy := &v1alpha1.TrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec: v1alpha1.TrafficPolicySpec{
			TargetRef:    v1alpha1.TargetRef{Name: "cart"},
			LoadBalancer: &v1alpha1.LoadBalancer{Policy: v1alpha1.RoundRobin},
		},
	}
	if err := c.Create(ctx, cartPolicy); err != nil {
		t.Fatal(err)
	}
	tp := expect("cart", "TargetNotFound", "ServiceNotFound")
	if a := meta.FindStatusCondition(tp.Status.Conditions, "Accepted"); a.Status != metav1.ConditionFalse ||
		!strings.Contains(a.Message, "shop/cart, which does not exist") {
		t.Errorf("Accepted = %s %q", a.Status, a.Message)
	}
	if f := meta.FindStatusCondition(tp.Status.Conditions, "TargetFound"); f.Message != "Service cart not found in namespace shop" {
		t.Errorf("TargetFound message = %q", f.Message)
	}

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "grpc", Port: 50051}, {Name: "http", Port: 8080},
		}},
	}
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	tp = expect("cart", "Accepted", "ServiceFound")
	if a := meta.FindStatusCondition(tp.Status.Conditions, "Accepted"); a.Status != metav1.ConditionTrue {
		t.Errorf("Accepted status = %s", a.Status)
	}

	// A port the Service lacks.
	wrongPort := &v1alpha1.TrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-admin"},
		Spec:       v1alpha1.TrafficPolicySpec{TargetRef: v1alpha1.TargetRef{Name: "cart", Port: ptr.To[int32](9999)}},
	}
	if err := c.Create(ctx, wrongPort); err != nil {
		t.Fatal(err)
	}
	tp = expect("cart-admin", "PortNotFound", "ServiceFound")
	if a := meta.FindStatusCondition(tp.Status.Conditions, "Accepted"); !strings.Contains(a.Message, "port 9999") ||
		!strings.Contains(a.Message, "8080") || !strings.Contains(a.Message, "50051") {
		t.Errorf("PortNotFound message = %q", a.Message)
	}

	// A younger policy for the whole Service loses to the older one...
	time.Sleep(1100 * time.Millisecond) // creation timestamps have one-second resolution
	rival := &v1alpha1.TrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "another"},
		Spec:       v1alpha1.TrafficPolicySpec{TargetRef: v1alpha1.TargetRef{Name: "cart"}},
	}
	if err := c.Create(ctx, rival); err != nil {
		t.Fatal(err)
	}
	tp = expect("another", "Conflicted", "ServiceFound")
	if a := meta.FindStatusCondition(tp.Status.Conditions, "Accepted"); !strings.Contains(a.Message, "cart on port 50051") {
		t.Errorf("Conflicted message = %q", a.Message)
	}
	expect("cart", "Accepted", "ServiceFound")

	// ...while one for a single port wins on that port even when younger.
	portOnly := &v1alpha1.TrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "http-only"},
		Spec:       v1alpha1.TrafficPolicySpec{TargetRef: v1alpha1.TargetRef{Name: "cart", Port: ptr.To[int32](8080)}},
	}
	if err := c.Create(ctx, portOnly); err != nil {
		t.Fatal(err)
	}
	expect("http-only", "Accepted", "ServiceFound")
	expect("cart", "Accepted", "ServiceFound")

	// The Service going away flips the conditions back.
	if err := c.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	expect("cart", "TargetNotFound", "ServiceNotFound")
}

// A policy that sets loadBalancer on a Service with sessionAffinity
// ClientIP says that it replaces the affinity; one that does not, nothing.
func TestEvaluateSaysWhenAffinityIsOverridden(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", SessionAffinity: corev1.ServiceAffinityClientIP,
			Ports: []corev1.ServicePort{{Name: "grpc", Port: 9000}}}}
	lb := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "rr"},
		Spec: v1alpha1.TrafficPolicySpec{TargetRef: v1alpha1.TargetRef{Name: "cart"},
			LoadBalancer: &v1alpha1.LoadBalancer{Policy: v1alpha1.RoundRobin}}}
	accepted, _ := policystatus.Evaluate(lb, svc, nil, xds.Inputs{})
	if accepted.Status != metav1.ConditionTrue || !strings.Contains(accepted.Message, "overrides the Service's sessionAffinity ClientIP") {
		t.Errorf("policy with loadBalancer: %s %q, want accepted and saying it overrides the affinity", accepted.Status, accepted.Message)
	}
	retries := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "retries"},
		Spec: v1alpha1.TrafficPolicySpec{TargetRef: v1alpha1.TargetRef{Name: "cart"}, Retries: &v1alpha1.Retries{Attempts: 2}}}
	if accepted, _ := policystatus.Evaluate(retries, svc, nil, xds.Inputs{}); strings.Contains(accepted.Message, "sessionAffinity") {
		t.Errorf("policy without loadBalancer: %q, want no word of the affinity", accepted.Message)
	}
	svc.Spec.SessionAffinity = corev1.ServiceAffinityNone
	if accepted, _ := policystatus.Evaluate(lb, svc, nil, xds.Inputs{}); strings.Contains(accepted.Message, "sessionAffinity") {
		t.Errorf("Service without affinity: %q, want no word of it", accepted.Message)
	}
}
