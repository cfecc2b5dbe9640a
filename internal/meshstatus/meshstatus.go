// Package meshstatus gathers what `kubectl tandem status` and `config`
// show, with the caller's credentials only: the injected pods the caller
// may list, discovery's records of their agents from every injector
// replica, the verdict of their sidecars against what renders now, and,
// for agents discovery does not know (on the API-server fallback, or
// discovery down), the agent's own report. Replicas and agents are reached
// through the API server's port-forward.
package meshstatus

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/installation"
	"github.com/tandem-mesh/tandem/internal/podconn"
	"github.com/tandem-mesh/tandem/internal/staleness"
	"github.com/tandem-mesh/tandem/internal/statusapi"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

// Pod is one injected pod as status shows it.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Phase     string `json:"phase"`
	Template  string `json:"template"`
	// Layout is "native" or "classic" sidecars; Capture "init", "cni", or
	// "" for the proxyless template.
	Layout     string `json:"layout"`
	Capture    string `json:"capture,omitempty"`
	InjectedBy string `json:"injectedBy"`
	// Sidecars is "current", "stale" or "unknown", with Reason.
	Sidecars       string `json:"sidecars"`
	SidecarsReason string `json:"sidecarsReason,omitempty"`
	AgentImage     string `json:"agentImage,omitempty"`
	// Source is where the agent's configuration comes from (discovery,
	// api-server, none), "unknown" when it could not be asked.
	Source string `json:"source"`
	// Replica is the injector pod whose discovery the agent streams from.
	Replica string `json:"replica,omitempty"`
	// Discovery is discovery's record of the agent's stream.
	Discovery *agentstatus.Stream `json:"discovery,omitempty"`
	// Agent is the agent's report: from discovery, or asked of the agent.
	Agent *agentstatus.Agent `json:"agent,omitempty"`
	// Refused lists configurations refused, with the refuser's own error.
	Refused []string `json:"refused,omitempty"`
	// Unreachable says why the agent's state is unknown.
	Unreachable string `json:"unreachable,omitempty"`
}

// Report is what status shows.
type Report struct {
	Pods     []Pod     `json:"pods"`
	Replicas []Replica `json:"replicas"`
	Warnings []string  `json:"warnings,omitempty"`
}

// Replica is an injector replica that answered: what it says of itself,
// and how many agents stream from it (their records are the pods').
type Replica struct {
	Pod       string `json:"pod"`
	Version   string `json:"version"`
	Injection string `json:"injection"`
	Discovery bool   `json:"discovery"`
	Ready     bool   `json:"ready"`
	Agents    int    `json:"agents"`
}

// Options say what to gather.
type Options struct {
	Kube    kubernetes.Interface
	Forward *podconn.Forwarder
	// TandemNamespace holds the install.
	TandemNamespace string
	// Namespace limits the pods; "" is every namespace.
	Namespace string
	// AskAgents is how many agents are asked at once.
	AskAgents int
}

// Gather builds the report. It fails when the caller may not read what
// status is made of: the pods, or discovery's records (port-forward to
// the injector's pods).
func Gather(ctx context.Context, o Options) (*Report, error) {
	if o.AskAgents <= 0 {
		o.AskAgents = 8
	}
	where := "namespace " + o.Namespace
	if o.Namespace == "" {
		where = "all namespaces"
	}
	list, err := o.Kube.CoreV1().Pods(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		if installation.Forbidden(err) {
			return nil, fmt.Errorf("status lists the pods of %s, which you may not (RBAC: list pods): %w", where, err)
		}
		return nil, fmt.Errorf("listing the pods of %s: %w", where, err)
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if _, ok := p.Annotations[wellknown.StatusAnnotation]; ok {
			pods = append(pods, p)
		}
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	in, err := installation.Find(ctx, o.Kube, o.TandemNamespace)
	if err != nil {
		return nil, err
	}
	rep := &Report{Pods: []Pod{}, Replicas: []Replica{}}
	records := map[string]agentstatus.Stream{}
	recordReplica := map[string]string{}
	var verdictsFrom *podconn.Tunnel
	for _, ip := range in.Running() {
		r, s, err := installation.Replica(ctx, o.Forward, &ip)
		if installation.Forbidden(err) {
			return nil, fmt.Errorf("status reads discovery's records from the injector's pods through port-forward, which you may not (RBAC: create pods/portforward in namespace %s): %w", in.Namespace, err)
		}
		if err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("injector pod %s: %v", ip.Name, err))
			continue
		}
		rep.Replicas = append(rep.Replicas, Replica{Pod: ip.Name, Version: r.Version, Injection: r.Injection, Discovery: r.Discovery, Ready: r.Ready, Agents: len(r.Agents)})
		for _, st := range r.Agents {
			records[st.Pod] = st
			recordReplica[st.Pod] = ip.Name
		}
		if verdictsFrom == nil {
			verdictsFrom = s
			defer s.Close()
		} else {
			s.Close()
		}
	}
	if len(in.Running()) == 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("no injector pod of Deployment %s/%s is running: discovery is down and the sidecars cannot be compared", in.Namespace, in.Deployment.Name))
	}
	verdicts := map[string]statusapi.PodVerdict{}
	if verdictsFrom != nil && len(pods) > 0 {
		vs, err := statusapi.Sidecars(ctx, verdictsFrom.HTTPClient(wellknown.InjectorStatusPort, installation.StatusTimeout), relevant(pods))
		if err != nil {
			rep.Warnings = append(rep.Warnings, "the sidecars could not be compared with what renders now: "+err.Error())
		}
		for _, v := range vs {
			verdicts[v.Namespace+"/"+v.Name] = v
		}
	}
	for i := range pods {
		p := describe(&pods[i])
		key := p.Namespace + "/" + p.Name
		if v, ok := verdicts[key]; ok {
			p.Sidecars, p.SidecarsReason = v.State, v.Reason
		} else {
			p.Sidecars, p.SidecarsReason = staleness.Unknown, "no injector replica answered"
		}
		if st, ok := records[key]; ok {
			p.Discovery, p.Replica, p.Agent = &st, recordReplica[key], st.Agent
			p.Source = agentstatus.SourceDiscovery
			if st.Agent != nil {
				p.Source = st.Agent.Source
			}
		}
		rep.Pods = append(rep.Pods, p)
	}
	askAgents(ctx, o, pods, rep.Pods)
	for i := range rep.Pods {
		rep.Pods[i].Refused = refusals(&rep.Pods[i])
	}
	return rep, nil
}

// relevant are the pods with only what a verdict reads.
func relevant(pods []corev1.Pod) []corev1.Pod {
	out := make([]corev1.Pod, len(pods))
	for i := range pods {
		out[i] = *staleness.Relevant(&pods[i])
	}
	return out
}

// describe is what the pod itself tells.
func describe(pod *corev1.Pod) Pod {
	p := Pod{Namespace: pod.Namespace, Name: pod.Name, Phase: string(pod.Status.Phase), Source: "unknown", InjectedBy: staleness.ByWebhook}
	st, _, err := webhook.ParseStatus(pod)
	if err != nil {
		p.SidecarsReason = err.Error()
		return p
	}
	p.Template, p.Layout = st.Template, "classic"
	if st.NativeSidecar {
		p.Layout = "native"
	}
	if st.ConfigHash == "" {
		p.InjectedBy = staleness.ByPolicy
	}
	switch {
	case slices.Contains(st.InitContainers, wellknown.InitContainerName):
		p.Capture = wellknown.CaptureInit
	case slices.Contains(st.InitContainers, wellknown.ValidateContainerName):
		p.Capture = wellknown.CaptureCNI
	}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		if c.Name == wellknown.AgentContainerName {
			p.AgentImage = c.Image
		}
	}
	return p
}

// askAgents asks the agents discovery does not know for their report.
func askAgents(ctx context.Context, o Options, pods []corev1.Pod, out []Pod) {
	sem := make(chan struct{}, o.AskAgents)
	var wg sync.WaitGroup
	for i := range out {
		p := &out[i]
		if p.Discovery != nil {
			continue
		}
		if pods[i].Status.Phase != corev1.PodRunning {
			p.Unreachable = "the pod is " + strings.ToLower(cmp.Or(string(pods[i].Status.Phase), "not running"))
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			a, err := AgentReport(ctx, o.Forward, p.Namespace, p.Name)
			if err != nil {
				p.Unreachable = err.Error()
				return
			}
			p.Agent, p.Source = a, a.Source
		})
	}
	wg.Wait()
}

// AgentReport asks the agent of pod namespace/name for its report.
func AgentReport(ctx context.Context, f *podconn.Forwarder, namespace, name string) (*agentstatus.Agent, error) {
	var a agentstatus.Agent
	if err := agentGet(ctx, f, namespace, name, agentstatus.StatusPath, &a, nil); err != nil {
		return nil, err
	}
	return &a, nil
}

// AgentConfig returns the xDS resources the agent of pod namespace/name
// serves now, of the given kinds (all when none), as JSON.
func AgentConfig(ctx context.Context, f *podconn.Forwarder, namespace, name string, kinds []string) ([]byte, error) {
	q := url.Values{}
	for _, k := range kinds {
		q.Add("kind", k)
	}
	var raw []byte
	err := agentGet(ctx, f, namespace, name, agentstatus.ConfigPath+"?"+q.Encode(), nil, &raw)
	return raw, err
}

// agentGet GETs path of the agent's debug endpoint: decoded into out, or
// the body into raw.
func agentGet(ctx context.Context, f *podconn.Forwarder, namespace, name, path string, out any, raw *[]byte) error {
	s, err := f.Open(ctx, namespace, name)
	if installation.Forbidden(err) {
		return fmt.Errorf("you may not port-forward to pod %s/%s (RBAC: create pods/portforward in namespace %s), through which its agent is asked: %w", namespace, name, namespace, err)
	}
	if err != nil {
		return err
	}
	defer s.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := s.HTTPClient(wellknown.AgentDebugPort, installation.StatusTimeout).Do(req)
	if err != nil {
		return fmt.Errorf("the agent of pod %s/%s does not answer on 127.0.0.1:%d (an agent without this endpoint, --debug-addr turned off, or the port taken in the pod): %w",
			namespace, name, wellknown.AgentDebugPort, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 512<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the agent of pod %s/%s: %s: %s", namespace, name, resp.Status, strings.TrimSpace(string(b)))
	}
	if raw != nil {
		*raw = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the agent of pod %s/%s answered what is not its report: %w", namespace, name, err)
	}
	return nil
}

// refusals are the configurations refused, by the proxy (its own error)
// or by the agent (discovery's response), and discovery refusing the
// agent's stream.
func refusals(p *Pod) []string {
	var out []string
	if a := p.Agent; a != nil {
		for _, px := range a.Proxies {
			for _, e := range px.Exchanges {
				if e.State() == agentstatus.StateRejected {
					out = append(out, fmt.Sprintf("proxy refused %s version %s: %s", e.Type, e.Rejected.Version, e.Rejected.Error))
				}
			}
		}
		if d := a.Discovery; d != nil && d.Refused != "" {
			out = append(out, "discovery refused the agent's stream: "+d.Refused)
		}
	}
	if d := p.Discovery; d != nil {
		for _, e := range d.Exchanges {
			if e.State() == agentstatus.StateRejected {
				out = append(out, fmt.Sprintf("agent refused discovery's %s response %s: %s", e.Type, e.Rejected.Version, e.Rejected.Error))
			}
		}
	}
	return out
}
