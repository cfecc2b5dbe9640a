package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Discovery checks an agent's projected token itself, without a request to
// the API server for each stream: the signature against the keys the API
// server publishes for its service-account tokens, the claims, and that the
// pod and service account the token is bound to still exist, from watches
// of their metadata. Every agent of a fleet reconnecting at once (discovery
// restarted, a node drained) is admitted at the speed of a signature check
// rather than queued behind TokenReviews. Whatever it cannot decide (keys
// not loaded, an unknown key, a token not bound to a pod, a pod created a
// moment ago and not seen yet) goes to a TokenReview, as before.
// +kubebuilder:rbac:urls=/.well-known/openid-configuration;/openid/v1/jwks,verbs=get
// +kubebuilder:rbac:groups="",resources=pods;serviceaccounts,verbs=get;list;watch

var (
	podsResource            = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	serviceAccountsResource = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}
)

// keysRefresh is how often the signing keys are fetched again; a token
// signed by a key not known yet triggers a fetch at most every keysRetry.
const (
	keysRefresh = 5 * time.Minute
	keysRetry   = 10 * time.Second
	// clockSkew is allowed between the API server's clock and ours.
	clockSkew = 30 * time.Second
)

// tokenClaims are the claims of a Kubernetes service-account token that
// matter here.
type tokenClaims struct {
	jwt.Claims
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string    `json:"name"`
			UID  types.UID `json:"uid"`
		} `json:"serviceaccount"`
		Pod *struct {
			Name string    `json:"name"`
			UID  types.UID `json:"uid"`
		} `json:"pod"`
	} `json:"kubernetes.io"`
}

// localTokens verifies tokens locally. A nil *localTokens decides nothing.
type localTokens struct {
	rest     rest.Interface
	pods     cache.SharedIndexInformer
	accounts cache.SharedIndexInformer
	log      *slog.Logger

	keys      atomic.Pointer[issuerKeys]
	fetchMu   sync.Mutex
	lastFetch time.Time
	// onPodGone is called with the UID of a pod that was deleted.
	onPodGone func(types.UID)
}

type issuerKeys struct {
	issuer string
	set    jose.JSONWebKeySet
}

// identity is who a token was issued to.
type identity struct {
	namespace, serviceAccount string
	pod                       string // empty for a token not bound to a pod
	podUID                    types.UID
	podLabels                 map[string]string // the pod's labels, when known
}

func newLocalTokens(rc rest.Interface, md metadata.Interface, log *slog.Logger, onPodGone func(types.UID)) (*localTokens, error) {
	l := &localTokens{rest: rc, log: log, onPodGone: onPodGone}
	l.pods = metadatainformer.NewFilteredMetadataInformer(md, podsResource, metav1.NamespaceAll, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, nil).Informer()
	l.accounts = metadatainformer.NewFilteredMetadataInformer(md, serviceAccountsResource, metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
	for _, inf := range []cache.SharedIndexInformer{l.pods, l.accounts} {
		if err := inf.SetTransform(stripIdentity); err != nil {
			return nil, err
		}
		if err := inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			log.Warn("watch failed; tokens it cannot check are reviewed by the API server", "error", err)
		}); err != nil {
			return nil, err
		}
	}
	if _, err := l.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok && l.onPodGone != nil {
			l.onPodGone(m.UID)
		}
	}}); err != nil {
		return nil, err
	}
	return l, nil
}

// stripIdentity keeps what a token check reads: name, namespace, UID and
// the pod's injection label.
func stripIdentity(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	out := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
	}}
	if v, ok := m.Labels[wellknown.InjectLabel]; ok {
		out.Labels = map[string]string{wellknown.InjectLabel: v}
	}
	return out, nil
}

// run watches until ctx ends and keeps the keys fresh.
func (l *localTokens) run(ctx context.Context) {
	if l == nil {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { l.pods.Run(ctx.Done()) })
	wg.Go(func() { l.accounts.Run(ctx.Done()) })
	t := time.NewTicker(keysRefresh)
	defer t.Stop()
	for {
		if err := l.fetchKeys(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("the API server's service-account keys could not be read; agents' tokens are reviewed by the API server", "error", err)
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
	}
}

// fetchKeys reads the issuer and its keys from the API server's OIDC
// discovery documents.
func (l *localTokens) fetchKeys(ctx context.Context) error {
	l.fetchMu.Lock()
	defer l.fetchMu.Unlock()
	l.lastFetch = time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := l.rest.Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("GET /.well-known/openid-configuration: %w", err)
	}
	var conf struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(b, &conf); err != nil || conf.Issuer == "" {
		return fmt.Errorf("/.well-known/openid-configuration names no issuer: %v", err)
	}
	// The API server serves the keys at this path whatever jwks_uri says
	// (which may name an address outside the cluster).
	if b, err = l.rest.Get().AbsPath("/openid/v1/jwks").DoRaw(ctx); err != nil {
		return fmt.Errorf("GET /openid/v1/jwks: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("/openid/v1/jwks: %w", err)
	}
	l.keys.Store(&issuerKeys{issuer: conf.Issuer, set: set})
	return nil
}

// errUndecided: the token must be reviewed by the API server.
var errUndecided = errors.New("not decided locally")

// verify checks token locally. It returns errUndecided when it cannot tell;
// any other error is a refusal the API server would make too.
func (l *localTokens) verify(ctx context.Context, token string, now time.Time) (identity, error) {
	if l == nil || !l.pods.HasSynced() || !l.accounts.HasSynced() {
		return identity{}, errUndecided
	}
	keys := l.keys.Load()
	if keys == nil {
		return identity{}, errUndecided
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512})
	if err != nil || len(tok.Headers) != 1 {
		return identity{}, errUndecided // not a token this check knows; the API server may
	}
	found := keys.set.Key(tok.Headers[0].KeyID)
	if len(found) == 0 {
		// Rotated keys: fetch again, not more often than keysRetry.
		l.fetchMu.Lock()
		stale := time.Since(l.lastFetch) > keysRetry
		l.fetchMu.Unlock()
		if stale {
			_ = l.fetchKeys(ctx)
		}
		return identity{}, errUndecided
	}
	var c tokenClaims
	if err := tok.Claims(found[0].Key, &c); err != nil {
		return identity{}, fmt.Errorf("token signature does not verify: %w", err)
	}
	if c.Issuer != keys.issuer {
		return identity{}, errUndecided // the API server may accept several issuers
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Time: now, AnyAudience: jwt.Audience{Audience}}, clockSkew); err != nil {
		return identity{}, fmt.Errorf("token refused (wanted audience %s, unexpired): %w", Audience, err)
	}
	k := c.Kubernetes
	if k.Namespace == "" || k.ServiceAccount.Name == "" || c.Subject != "system:serviceaccount:"+k.Namespace+":"+k.ServiceAccount.Name {
		return identity{}, errUndecided
	}
	if k.Pod == nil || k.Pod.Name == "" {
		return identity{}, errUndecided // not bound to a pod: only the API server can tell it is current
	}
	acct, ok := l.object(l.accounts, k.Namespace, k.ServiceAccount.Name)
	if !ok {
		return identity{}, errUndecided
	}
	if acct.UID != k.ServiceAccount.UID {
		return identity{}, fmt.Errorf("token refused: service account %s/%s was deleted since it was issued", k.Namespace, k.ServiceAccount.Name)
	}
	pod, ok := l.object(l.pods, k.Namespace, k.Pod.Name)
	if !ok {
		return identity{}, errUndecided // deleted, or created a moment ago and not seen yet
	}
	if pod.UID != k.Pod.UID {
		return identity{}, fmt.Errorf("token refused: pod %s/%s was deleted since it was issued", k.Namespace, k.Pod.Name)
	}
	return identity{namespace: k.Namespace, serviceAccount: k.ServiceAccount.Name, pod: k.Pod.Name, podUID: pod.UID, podLabels: pod.Labels}, nil
}

func (l *localTokens) object(inf cache.SharedIndexInformer, ns, name string) (*metav1.PartialObjectMetadata, bool) {
	obj, ok, err := inf.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	return m, ok
}

// podLabels returns a pod's labels from the watch, when it is there.
func (l *localTokens) podLabels(ns, name string) (map[string]string, bool) {
	if l == nil || !l.pods.HasSynced() {
		return nil, false
	}
	m, ok := l.object(l.pods, ns, name)
	if !ok {
		return nil, false
	}
	return m.Labels, true
}
