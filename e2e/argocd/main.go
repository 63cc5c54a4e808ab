// argocd-health judges objects the way an Argo CD application controller does: it reads the resource
// customizations from an argocd-cm ConfigMap with Argo CD's settings manager (so the documented snippet is parsed by
// Argo CD's own code) and evaluates each object with the health Lua it selects.
//
// Usage: KUBECONFIG=... argocd-health -namespace NS < objects.json
//
// objects.json is a JSON list of objects (live, as the API server returns them). The output is a JSON list of
// {"status": ..., "message": ...}, one per object, in order; "status" is empty when Argo CD has no health check for
// the object's kind.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/argo-cd/v3/util/settings"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	namespace := flag.String("namespace", "", "namespace of the argocd-cm ConfigMap (labelled app.kubernetes.io/part-of: argocd)")
	flag.Parse()
	if err := run(*namespace); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(1)
	}
}

func run(namespace string) error {
	if namespace == "" {
		return fmt.Errorf("-namespace is required")
	}
	config, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	clientset, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	overrides, err := settings.NewSettingsManager(ctx, clientset, namespace).GetResourceOverrides()
	if err != nil {
		return fmt.Errorf("resource overrides of argocd-cm in %s: %w", namespace, err)
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var objects []map[string]any
	if err := json.Unmarshal(input, &objects); err != nil {
		return fmt.Errorf("stdin is not a JSON list of objects: %w", err)
	}
	results := make([]result, 0, len(objects))
	for _, o := range objects {
		obj := &unstructured.Unstructured{Object: o}
		// What the application controller calls for a resource with a health customization.
		status, err := lua.ResourceHealthOverrides(overrides).GetResourceHealth(obj)
		if err != nil {
			return fmt.Errorf("%s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		r := result{}
		if status != nil {
			r = result{Status: string(status.Status), Message: status.Message}
		}
		results = append(results, r)
	}
	return json.NewEncoder(os.Stdout).Encode(results)
}
