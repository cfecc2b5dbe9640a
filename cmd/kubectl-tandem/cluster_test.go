package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tandem-mesh/tandem/internal/testutil/kubelettest"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds the injector and the agent once for the package's tests
// and returns their directory.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "kubectl-tandem-test-"); binErr != nil {
			return
		}
		for _, c := range []string{"injector", "agent"} {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, c), "../"+c).CombinedOutput(); err != nil {
				binErr = &buildError{c, err, string(out)}
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

type buildError struct {
	what string
	err  error
	out  string
}

func (e *buildError) Error() string {
	return "go build " + e.what + ": " + e.err.Error() + "\n" + e.out
}

// cluster is a test API server with a kubelet for port-forward and an
// administrator's kubeconfig.
type cluster struct {
	env        *envtest.Environment
	cfg        *rest.Config
	kube       kubernetes.Interface
	kubelet    *kubelettest.Kubelet
	kubeconfig string
}

func startCluster(t *testing.T, opts testenv.Options) *cluster {
	t.Helper()
	env, cfg := testenv.Start(t, opts)
	c := &cluster{env: env, cfg: cfg, kube: kubernetes.NewForConfigOrDie(cfg)}
	var pool []netip.Addr
	for i := range 40 {
		pool = append(pool, netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}))
	}
	c.kubelet = kubelettest.Start(t, c.kube, "node-1", pool)
	c.kubeconfig = c.user(t, "admin", "system:masters")
	return c
}

// user writes a kubeconfig of a user of the test API server.
func (c *cluster) user(t *testing.T, name string, groups ...string) string {
	t.Helper()
	u, err := c.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// allow grants user the rules, cluster-wide.
func (c *cluster) allow(t *testing.T, user string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: user}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// operator writes the kubeconfig of a user bound to the install's
// operator roles (config/rbac/operator_role.yaml), which must be applied.
func (c *cluster) operator(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	kc := c.user(t, "operator")
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "operator"}}
	if _, err := c.kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "operator"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tandem-operator"}, Subjects: subjects}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.kube.RbacV1().RoleBindings("tandem-system").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "operator"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "tandem-operator"}, Subjects: subjects}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return kc
}

// apply creates the objects of an install of the given kinds, kind by
// kind in that order; those that exist are left.
func (c *cluster) apply(t *testing.T, objs []*unstructured.Unstructured, kinds ...string) {
	t.Helper()
	cl, err := client.New(c.cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range kinds {
		for _, o := range objs {
			if o.GetKind() != kind {
				continue
			}
			if err := cl.Create(context.Background(), o.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
}

// cli runs kubectl tandem as kubeconfig's user.
func cli(kubeconfig string, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(append([]string{"--kubeconfig", kubeconfig}, args...), genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}
