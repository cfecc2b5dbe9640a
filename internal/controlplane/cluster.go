package controlplane

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControllerManagerControllers are the kube-controller-manager controllers a
// local cluster runs: enough for Deployments to become Pods and Services to
// get EndpointSlices, namespaces get their default ServiceAccount, and
// nothing that needs nodes or a cloud.
var ControllerManagerControllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"endpointslice-controller",
	"garbage-collector-controller",
	"serviceaccount-controller",
}

// Cluster is a running local control plane.
type Cluster struct {
	Env *envtest.Environment
	// Config is an admin client configuration.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file for child processes.
	Kubeconfig string
	// Dir holds the kubeconfig and the controller manager's log.
	Dir string

	kcm     *exec.Cmd
	kcmDone chan error
}

// StartCluster starts etcd, kube-apiserver and kube-controller-manager.
// Stop ends them all; it is safe to call after a failed start.
func StartCluster(opts Options) (*Cluster, error) {
	opts.WithControllerManager = true
	env, err := New(opts)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tandem-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Env: env, Dir: dir}
	if c.Config, err = env.Start(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	admin, err := env.AddUser(envtest.User{Name: "tandem-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		c.Stop()
		return nil, err
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		c.Stop()
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.startControllerManager(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startControllerManager() error {
	logPath := filepath.Join(c.Dir, "kube-controller-manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	c.kcm = exec.Command(filepath.Join(c.Env.BinaryAssetsDirectory, "kube-controller-manager"),
		"--kubeconfig="+c.Kubeconfig,
		"--controllers="+strings.Join(ControllerManagerControllers, ","),
		"--leader-elect=false",
		"--secure-port=0",
	)
	c.kcm.Stdout, c.kcm.Stderr = logFile, logFile
	// Its own process group, so a terminal's Ctrl-C reaches it only through Stop.
	c.kcm.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.kcm.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	c.kcmDone = make(chan error, 1)
	go func() { c.kcmDone <- c.kcm.Wait(); logFile.Close() }()
	// A bad flag or kubeconfig ends it at once; give it a moment to say so.
	select {
	case err := <-c.kcmDone:
		c.kcmDone <- err
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("kube-controller-manager exited at start (%v):\n%s", err, tail(out, 20))
	case <-time.After(time.Second):
		return nil
	}
}

// ControllerManagerLog returns the last lines the controller manager wrote.
func (c *Cluster) ControllerManagerLog(lines int) string {
	out, _ := os.ReadFile(filepath.Join(c.Dir, "kube-controller-manager.log"))
	return tail(out, lines)
}

// Stop ends the controller manager, the API server and etcd, and removes
// the cluster's files.
func (c *Cluster) Stop() error {
	var errs []error
	if c.kcm != nil && c.kcm.Process != nil {
		_ = c.kcm.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.kcmDone:
		case <-time.After(10 * time.Second):
			_ = c.kcm.Process.Kill()
			<-c.kcmDone
		}
	}
	if c.Config != nil {
		if err := c.Env.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Dir != "" {
		errs = append(errs, os.RemoveAll(c.Dir))
	}
	return errors.Join(errs...)
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
