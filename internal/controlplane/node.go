package controlplane

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// Node plays scheduler and kubelet for one node of a local cluster: it binds
// pods to itself, gives each an address from its pool and reports it Running
// and Ready, so the EndpointSlice controller publishes it. It runs no
// containers; the caller runs whatever processes stand for them.
type Node struct {
	Name   string
	HostIP netip.Addr

	client kubernetes.Interface
	mu     sync.Mutex
	pool   []netip.Addr
	given  map[types.UID]netip.Addr
}

// NewNode returns a node that hands out the addresses of pool in order.
func NewNode(client kubernetes.Interface, name string, hostIP netip.Addr, pool []netip.Addr) *Node {
	return &Node{Name: name, HostIP: hostIP, client: client, pool: pool, given: map[types.UID]netip.Addr{}}
}

// Register creates the Node object; the EndpointSlice controller skips pods
// whose node it cannot find.
func (n *Node) Register(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name}},
	}
	_, err := n.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// Admit binds pod to the node (if not yet bound), assigns it an address and
// marks it and all its containers running and ready. It returns the address.
func (n *Node) Admit(ctx context.Context, pod *corev1.Pod) (netip.Addr, error) {
	ip, err := n.addressFor(pod.UID)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	pods := n.client.CoreV1().Pods(pod.Namespace)
	if pod.Spec.NodeName == "" {
		binding := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: n.Name},
		}
		if err := pods.Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
			return netip.Addr{}, fmt.Errorf("binding pod %s/%s to %s: %w", pod.Namespace, pod.Name, n.Name, err)
		}
	}
	current, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return netip.Addr{}, err
	}
	now := metav1.Now()
	st := &current.Status
	st.Phase = corev1.PodRunning
	st.HostIP = n.HostIP.String()
	st.HostIPs = []corev1.HostIP{{IP: n.HostIP.String()}}
	st.PodIP = ip.String()
	st.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	st.StartTime = &now
	st.Conditions = nil
	for _, c := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	st.InitContainerStatuses = nil
	for _, c := range current.Spec.InitContainers {
		s := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image}
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			// A native sidecar keeps running next to the app.
			s.Ready, s.Started = true, ptr.To(true)
			s.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
		} else {
			s.Ready = true
			s.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, s)
	}
	st.ContainerStatuses = nil
	for _, c := range current.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	if _, err := pods.UpdateStatus(ctx, current, metav1.UpdateOptions{}); err != nil {
		return netip.Addr{}, fmt.Errorf("marking pod %s/%s ready: %w", pod.Namespace, pod.Name, err)
	}
	return ip, nil
}

func (n *Node) addressFor(uid types.UID) (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ip, ok := n.given[uid]; ok {
		return ip, nil
	}
	if len(n.pool) == 0 {
		return netip.Addr{}, fmt.Errorf("node %s has no pod addresses left", n.Name)
	}
	ip := n.pool[0]
	n.pool = n.pool[1:]
	n.given[uid] = ip
	return ip, nil
}
