//go:build linux

// Package cniplugin is tandem-cni, a chained CNI plugin: when a pod's
// sandbox is created it installs, in the pod's network namespace, the
// capture rules `agent init` would install, for the pods Tandem injected in
// CNI mode, and passes every other pod through untouched.
//
// Which pods are Tandem's, and how their traffic is captured, is read from
// the pod itself: its tandem.dev/status annotation lists the
// tandem-validate init container, whose arguments are the capture flags
// the injector resolved from the pod's and its namespace's annotations
// (capture.ConfigFromArgs parses them as `agent init` does). So the plugin
// needs to read pods and nothing else.
//
// A pod that cannot be read is an error (try again later): the plugin
// cannot tell whether it needs capture, and a CNI-mode pod started without
// its rules would send its traffic unbalanced until tandem-validate stops
// it. Namespaces in excludeNamespaces (kube-system by default) are never
// looked up, so the cluster's own pods start even when the API server
// cannot be reached.
package cniplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tandem-mesh/tandem/internal/capture"
	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Name is the plugin's type in a conflist and the name of its binary.
const Name = "tandem-cni"

// Versions are the CNI spec versions the plugin speaks. The 0.3 and 0.4
// releases are in, since many primary CNIs still write them in their
// conflists (the entry is chained into theirs); CHECK exists from 0.4.0,
// STATUS and GC from 1.1.0, and skel refuses them below.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// DefaultExcludeNamespaces are skipped when the configuration names none.
var DefaultExcludeNamespaces = []string{"kube-system"}

// lookupTimeout bounds the pod lookup; the runtime retries a failed ADD.
const lookupTimeout = 10 * time.Second

// Conf is the plugin's entry in the node's conflist.
type Conf struct {
	types.PluginConf
	// Kubeconfig is the path of the credentials the installer writes,
	// allowed to get pods and nothing else.
	Kubeconfig string `json:"kubeconfig"`
	// ExcludeNamespaces are passed through without a lookup.
	ExcludeNamespaces *[]string `json:"excludeNamespaces,omitempty"`
}

// k8sArgs are the CNI_ARGS the kubelet's runtime passes.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE types.UnmarshallableString //nolint:revive // the runtime's names
	K8S_POD_NAME      types.UnmarshallableString //nolint:revive
	K8S_POD_UID       types.UnmarshallableString //nolint:revive
}

// PodGetter reads one pod with the credentials of kubeconfig.
type PodGetter func(ctx context.Context, kubeconfig, namespace, name string) (*corev1.Pod, error)

// Plugin carries what the commands need from outside; the zero value reads
// pods from the API server.
type Plugin struct {
	GetPod PodGetter
}

// Funcs are the plugin's commands for skel.
func (p Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, Status: p.Status, GC: p.GC}
}

// Add installs the capture rules of a CNI-mode pod, and returns the
// previous plugin's result unchanged for every pod.
func (p Plugin) Add(args *skel.CmdArgs) error {
	conf, pod, rs, err := p.podRuleset(args)
	if err != nil {
		return err
	}
	if rs != nil {
		err := netns.At(args.Netns, func() error {
			if err := rs.Apply(); err != nil {
				return err
			}
			return rs.Check() // read back: the kernel holds what was sent
		})
		if err != nil {
			return types.NewError(types.ErrInternal, fmt.Sprintf("%s: installing the capture rules of pod %s: %v", Name, pod, err), "")
		}
	}
	return types.PrintResult(conf.PrevResult, conf.CNIVersion)
}

// Del removes the capture table. It needs neither the API server nor the
// pod (which may be gone); a namespace that is gone has nothing to remove.
func (p Plugin) Del(args *skel.CmdArgs) error {
	if _, err := parseConf(args.StdinData, false); err != nil {
		return err
	}
	if args.Netns == "" {
		return nil
	}
	err := netns.At(args.Netns, capture.Remove)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return types.NewError(types.ErrInternal, fmt.Sprintf("%s: removing the capture rules: %v", Name, err), "")
	}
	return nil
}

// Check confirms that a CNI-mode pod's namespace holds exactly its rules.
func (p Plugin) Check(args *skel.CmdArgs) error {
	_, pod, rs, err := p.podRuleset(args)
	if err != nil || rs == nil {
		return err
	}
	if err := netns.At(args.Netns, rs.Check); err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("%s: the capture rules of pod %s are not as installed: %v", Name, pod, err), "")
	}
	return nil
}

// podRuleset decodes the configuration of ADD or CHECK and builds the
// rules the sandbox's pod needs; rs is nil when it needs none.
func (p Plugin) podRuleset(args *skel.CmdArgs) (conf *Conf, pod string, rs *capture.Ruleset, err error) {
	if conf, err = parseConf(args.StdinData, true); err != nil {
		return nil, "", nil, err
	}
	pod, cfg, err := p.podCapture(conf, args)
	if err != nil || pod == "" {
		return conf, "", nil, err
	}
	if rs, err = capture.Build(cfg); err != nil {
		return conf, pod, nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("%s: pod %s: %v", Name, pod, err), "")
	}
	return conf, pod, rs, nil
}

// Status reports whether ADD can work: the kubeconfig must load.
func (p Plugin) Status(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData, false)
	if err != nil {
		return err
	}
	if _, err := clientcmd.BuildConfigFromFlags("", conf.Kubeconfig); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("%s: kubeconfig %s: %v", Name, conf.Kubeconfig, err), "")
	}
	return nil
}

// GC has nothing to collect: the rules live in the pods' network
// namespaces and end with them.
func (p Plugin) GC(args *skel.CmdArgs) error {
	_, err := parseConf(args.StdinData, false)
	return err
}

// parseConf decodes and checks the configuration; withPrev requires the
// previous plugin's result, which ADD and CHECK of a chained plugin get.
func parseConf(data []byte, withPrev bool) (*Conf, error) {
	conf := &Conf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("%s: decoding the plugin configuration: %v", Name, err), "")
	}
	if conf.Kubeconfig == "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf(`%s: the plugin configuration has no "kubeconfig": want the path of the kubeconfig %s install writes, such as /etc/cni/net.d/%s.kubeconfig`, Name, Name, Name), "")
	}
	if conf.ExcludeNamespaces == nil {
		conf.ExcludeNamespaces = &DefaultExcludeNamespaces
	}
	if !withPrev {
		return conf, nil
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("%s: decoding prevResult: %v", Name, err), "")
	}
	if conf.PrevResult == nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("%s is a chained plugin and got no prevResult: list it after the primary plugin in a conflist", Name), "")
	}
	return conf, nil
}

// podCapture finds the pod of the sandbox and its capture settings. pod is
// empty when the plugin has nothing to do: not a Kubernetes pod, an
// excluded namespace, or a pod not injected in CNI mode.
func (p Plugin) podCapture(conf *Conf, args *skel.CmdArgs) (pod string, cfg capture.Config, err error) {
	var k k8sArgs
	k.IgnoreUnknown = true
	if err := types.LoadArgs(args.Args, &k); err != nil {
		return "", cfg, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("%s: CNI_ARGS: %v", Name, err), "")
	}
	ns, name := string(k.K8S_POD_NAMESPACE), string(k.K8S_POD_NAME)
	if ns == "" || name == "" || slices.Contains(*conf.ExcludeNamespaces, ns) {
		return "", cfg, nil
	}
	id := ns + "/" + name
	get := p.GetPod
	if get == nil {
		get = getPod
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	obj, err := get(ctx, conf.Kubeconfig, ns, name)
	if err != nil {
		return "", cfg, types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("%s: reading pod %s from the API server (kubeconfig %s): %v; without it the plugin cannot tell whether the pod needs traffic capture", Name, id, conf.Kubeconfig, err), "")
	}
	if uid := string(k.K8S_POD_UID); uid != "" && uid != string(obj.UID) {
		return "", cfg, types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("%s: pod %s on the API server has UID %s, the sandbox is for UID %s", Name, id, obj.UID, uid), "")
	}
	cfg, cni, err := CaptureOf(obj)
	if err != nil {
		return "", cfg, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("%s: pod %s: %v", Name, id, err), "")
	}
	if !cni {
		return "", cfg, nil
	}
	return id, cfg, nil
}

// CaptureOf says whether pod was injected in CNI mode and, if so, with
// which capture settings: the arguments of its tandem-validate container,
// when the injector's status annotation lists that container.
func CaptureOf(pod *corev1.Pod) (cfg capture.Config, cni bool, err error) {
	raw, ok := pod.Annotations[wellknown.StatusAnnotation]
	if !ok {
		return cfg, false, nil
	}
	// Only the one field: newer injectors may record more.
	var status struct {
		InitContainers []string `json:"initContainers"`
	}
	if err := json.Unmarshal([]byte(raw), &status); err != nil {
		return cfg, false, fmt.Errorf("annotation %s is not the injector's status JSON: %v", wellknown.StatusAnnotation, err)
	}
	if !slices.Contains(status.InitContainers, wellknown.ValidateContainerName) {
		return cfg, false, nil
	}
	i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == wellknown.ValidateContainerName })
	if i < 0 {
		return cfg, false, fmt.Errorf("annotation %s lists the init container %s, which the pod does not have", wellknown.StatusAnnotation, wellknown.ValidateContainerName)
	}
	cfg, err = capture.ConfigFromArgs(pod.Spec.InitContainers[i].Args)
	if err != nil {
		return cfg, false, fmt.Errorf("the arguments of init container %s: %v", wellknown.ValidateContainerName, err)
	}
	return cfg, true, nil
}

// getPod reads a pod with the client of the kubeconfig.
func getPod(ctx context.Context, kubeconfig, namespace, name string) (*corev1.Pod, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.Timeout = lookupTimeout
	rc.UserAgent = Name
	c, err := corev1client.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return c.Pods(namespace).Get(ctx, name, metav1.GetOptions{})
}
