package wellknown

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// WatchNamespacesForm is what AnnotationWatchNamespaces and the agent's
// --watch-namespaces accept, for error messages.
const WatchNamespacesForm = "comma-separated namespace names such as shop,payments (empty for all)"

// ParseWatchNamespaces parses the value of AnnotationWatchNamespaces, which
// the injector passes on as `agent run --watch-namespaces`: both read it with
// this one rule. Spaces around names are ignored; an empty or blank value is
// an empty list (watch every namespace); an empty item or a name that is not
// a namespace name is an error naming it.
func ParseWatchNamespaces(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	names := strings.Split(s, ",")
	for i, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			return nil, fmt.Errorf(`namespace "" (item %d of the list) is empty; remove the stray comma`, i+1)
		}
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return nil, fmt.Errorf("%q is not a namespace name: %s", n, strings.Join(errs, "; "))
		}
		names[i] = n
	}
	return names, nil
}
