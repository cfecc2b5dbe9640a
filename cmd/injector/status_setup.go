package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/injectcmd"
	"github.com/tandem-mesh/tandem/internal/injectedpods"
	"github.com/tandem-mesh/tandem/internal/staleness"
	"github.com/tandem-mesh/tandem/internal/statusapi"
	"github.com/tandem-mesh/tandem/internal/version"
	"github.com/tandem-mesh/tandem/webhook"
)

// The status of injected pods is read from a watch of pods, on the leader.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// setupStatus serves the status endpoint on loopback (discovery's records
// of its agents, and verdicts of pods' sidecars, for kubectl tandem), and
// watches the injected pods for tandem_injector_pods. disc is nil without
// discovery, webhookInjector without the webhook.
func setupStatus(mgr ctrl.Manager, o *serveOptions, disc *discovery.Server, webhookInjector *webhook.Injector) error {
	renders, err := rendersNow(mgr, o, webhookInjector)
	if err != nil {
		return err
	}
	namespace := cachedNamespace(mgr.GetClient())
	kube, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return err
	}
	pods, err := injectedpods.New(injectedpods.Options{Kube: kube, Injector: renders, Namespace: namespace,
		Logger: slog.New(logr.ToSlogHandler(mgr.GetLogger().WithName("pods")))})
	if err != nil {
		return err
	}
	if err := mgr.Add(pods); err != nil {
		return err
	}
	collectors := []prometheus.Collector{pods}
	if disc != nil {
		collectors = append(collectors, disc)
	}
	if err := mgr.Add(registered(collectors)); err != nil {
		return err
	}
	if o.statusAddr == "" {
		return nil
	}
	lis, err := net.Listen("tcp", o.statusAddr)
	if err != nil {
		return fmt.Errorf("flag --status-addr=%q: %w", o.statusAddr, err)
	}
	host, _ := os.Hostname()
	injection := ""
	switch {
	case o.webhook:
		injection = staleness.ByWebhook
	case o.policyParams != "":
		injection = staleness.ByPolicy
	}
	h := statusapi.Handler(statusapi.Source{
		Replica: func() statusapi.Replica {
			r := statusapi.Replica{Host: host, Version: version.Number(), Injection: injection, Agents: []agentstatus.Stream{}}
			if disc != nil {
				r.Discovery, r.Ready, r.Agents = true, disc.Ready(), disc.Agents()
			}
			return r
		},
		Injector:  renders,
		Namespace: namespace,
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		go func() {
			<-ctx.Done()
			srv.Close()
		}()
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("status endpoint: %w", err)
		}
		return nil
	}))
}

// rendersNow returns what renders a pod now: the webhook's injector, or,
// where admission policies inject, one built from their parameters (read
// from the manager's cache, rebuilt when they change).
func rendersNow(mgr ctrl.Manager, o *serveOptions, webhookInjector *webhook.Injector) (func(context.Context) (*webhook.Injector, error), error) {
	if o.policyParams == "" {
		in := webhookInjector
		if in == nil {
			var err error
			if in, err = o.Injector(o.nativeResolved); err != nil {
				return nil, err
			}
		}
		return func(context.Context) (*webhook.Injector, error) { return in, nil }, nil
	}
	var (
		mu      sync.Mutex
		version string
		in      *webhook.Injector
	)
	return func(ctx context.Context) (*webhook.Injector, error) {
		var cm corev1.ConfigMap
		if err := mgr.GetClient().Get(ctx, client.ObjectKey{Namespace: o.InjectorNamespace, Name: o.policyParams}, &cm); err != nil {
			return nil, fmt.Errorf("the admission policies' parameters, ConfigMap %s/%s: %w", o.InjectorNamespace, o.policyParams, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if in != nil && cm.ResourceVersion == version {
			return in, nil
		}
		f := injectcmd.Flags{TemplatesDir: o.TemplatesDir, InjectorNamespace: o.InjectorNamespace}
		native, err := f.FromParams(cm.Data)
		if err == nil {
			in, err = f.Injector(native)
		}
		if err != nil {
			in = nil
			return nil, fmt.Errorf("the admission policies' parameters, ConfigMap %s/%s: %w", o.InjectorNamespace, o.policyParams, err)
		}
		version = cm.ResourceVersion
		return in, nil
	}, nil
}

// registered registers collectors with the manager's metrics registry for
// as long as the manager runs.
func registered(collectors []prometheus.Collector) manager.RunnableFunc {
	return func(ctx context.Context) error {
		for _, c := range collectors {
			if err := metrics.Registry.Register(c); err != nil {
				return err
			}
		}
		<-ctx.Done()
		for _, c := range collectors {
			metrics.Registry.Unregister(c)
		}
		return nil
	}
}
