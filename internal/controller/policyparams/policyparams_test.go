package policyparams_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/tandem-mesh/tandem/internal/controller/policyparams"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

const (
	ns      = "tandem-system"
	name    = "tandem-injection-defaults"
	address = "tandem-discovery.tandem-system.svc:15012"
)

// The two keys follow the CA: written beside the install's keys once the
// ConfigMap exists (never creating it), put back when the ConfigMap is
// replaced without them, withdrawn when there is no CA.
func TestPublishesDiscoveryForThePolicies(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	cms := cs.CoreV1().ConfigMaps(ns)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ca := "CA-1"
	changed := make(chan event.GenericEvent, 1)
	testenv.StartManager(t, cfg, manager.Options{Cache: cache.Options{ByObject: policyparams.CacheByObject(ns, name)}},
		func(mgr ctrl.Manager) error {
			return (&policyparams.Reconciler{
				Client: mgr.GetClient(), Namespace: ns, Name: name, Address: address,
				CA:      func() string { mu.Lock(); defer mu.Unlock(); return ca },
				Changed: changed,
			}).SetupWithManager(mgr)
		})

	// Not installed: nothing is created.
	changed <- event.GenericEvent{}
	poll.Never(t, 2*time.Second, "the ConfigMap created by the publisher", func() bool {
		_, err := cms.Get(ctx, name, metav1.GetOptions{})
		return !apierrors.IsNotFound(err)
	})
	install := map[string]string{"proxy-image": "envoyproxy/envoy:v1.40.0", "template": "envoy"}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: install}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := func(extra map[string]string) func() error {
		return func() error {
			cm, err := cms.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			w := maps.Clone(install)
			maps.Copy(w, extra)
			if !maps.Equal(cm.Data, w) {
				return fmt.Errorf("data %v, want %v", cm.Data, w)
			}
			return nil
		}
	}
	poll.Eventually(t, 30*time.Second, want(map[string]string{"discovery-address": address, "discovery-ca": "CA-1"}))

	// Replaced by the install's version (kubectl replace): put back.
	cm, err := cms.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = maps.Clone(install)
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 30*time.Second, want(map[string]string{"discovery-address": address, "discovery-ca": "CA-1"}))

	// A new CA replaces the old; no CA withdraws both keys.
	for _, next := range []string{"CA-2", ""} {
		mu.Lock()
		ca = next
		mu.Unlock()
		changed <- event.GenericEvent{}
		if next == "" {
			poll.Eventually(t, 30*time.Second, want(nil))
		} else {
			poll.Eventually(t, 30*time.Second, want(map[string]string{"discovery-address": address, "discovery-ca": next}))
		}
	}
}
