// Package policy compiles the injector's templates and settings into
// Kubernetes admission policies: a MutatingAdmissionPolicy that adds the
// sidecars and a ValidatingAdmissionPolicy that refuses what the webhook
// refuses, both evaluated by the API server itself. The defaults live in a
// ConfigMap the bindings name, so changing an image is an edit of data,
// not of CEL.
package policy

import (
	"fmt"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

// Names of the objects Compile makes.
const (
	MutatingName   = wellknown.MutatingPolicy
	ValidatingName = wellknown.ValidatingPolicy
	ParamsName     = wellknown.PolicyParams
)

// Policies are the objects that inject without a webhook. Each policy has
// two bindings, selecting pods as the webhook configuration's two webhooks
// do: in labeled namespaces unless labeled out, and labeled in elsewhere;
// the API server evaluates nothing for any other pod.
type Policies struct {
	Params             *corev1.ConfigMap
	Mutating           *admissionv1.MutatingAdmissionPolicy
	MutatingBindings   []*admissionv1.MutatingAdmissionPolicyBinding
	Validating         *admissionv1.ValidatingAdmissionPolicy
	ValidatingBindings []*admissionv1.ValidatingAdmissionPolicyBinding
}

// annotated is one annotation the injector reads, with how to check it.
type annotated struct {
	webhook.AnnotationSetting
	key  string // params key, variable name
	kind kind
}

type compiler struct {
	in          *webhook.Injector
	annotations []annotated
	templates   []string
	variants    []*variant
	params      map[string]string
}

// Compile builds the policies for the injector's templates and defaults.
func Compile(in *webhook.Injector) (*Policies, error) {
	c := &compiler{in: in, templates: in.Templates().Names(), params: map[string]string{}}
	tmpl, values := in.DefaultSettings()
	for _, a := range in.AnnotationSettings() {
		x := annotated{AnnotationSetting: a}
		switch {
		case a.Annotation == wellknown.AnnotationTemplate:
			x.key, x.kind = keyTemplate, kindTemplate
		case a.Annotation == wellknown.AnnotationNativeSidecar:
			x.key, x.kind = keyNative, kindBool
		case a.Annotation == wellknown.AnnotationCapture:
			x.key, x.kind = keyCapture, kindCapture
		default:
			i := slices.IndexFunc(settings, func(s setting) bool { return s.annotation == a.Annotation })
			if i < 0 {
				return nil, fmt.Errorf("the injector reads annotation %s, which the policy does not know how to check", a.Annotation)
			}
			x.key, x.kind = settings[i].key, settings[i].kind
		}
		if a.Flag != "" && a.Flag != x.key {
			return nil, fmt.Errorf("annotation %s: flag --%s, but the policy calls the setting %s", a.Annotation, a.Flag, x.key)
		}
		c.annotations = append(c.annotations, x)
	}
	// Params: every setting a flag sets, in canonical form.
	c.params[keyTemplate] = tmpl
	c.params[keyNative] = fmt.Sprint(values.NativeSidecar)
	c.params[keyCapture] = values.Capture
	for _, s := range settings {
		if c.hasFlag(s) && s.kind != kindPublished {
			c.params[s.key] = *s.field(&values)
		}
	}
	for _, name := range c.templates {
		for _, native := range []bool{true, false} {
			for _, capture := range captures {
				vr, err := learn(in.Templates(), name, native, capture, values)
				if err != nil {
					return nil, err
				}
				c.variants = append(c.variants, vr)
			}
		}
	}
	return c.policies(), nil
}

// hasFlag: a setting without an annotation is a flag; one with an
// annotation has a flag when the injector says so.
func (c *compiler) hasFlag(s setting) bool {
	if s.annotation == "" {
		return true
	}
	for _, a := range c.annotations {
		if a.Annotation == s.annotation {
			return a.Flag != ""
		}
	}
	return false
}

func (c *compiler) policies() *Policies {
	ns := c.in.InjectorNamespace()
	labels := map[string]string{"app.kubernetes.io/name": "tandem-injector", "app.kubernetes.io/part-of": "tandem"}
	meta := func(name, namespace string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels}
	}
	fail := admissionv1.Fail
	deny := admissionv1.DenyAction
	paramKind := &admissionv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"}
	paramRef := &admissionv1.ParamRef{Name: ParamsName, Namespace: ns, ParameterNotFoundAction: &deny}
	constraints := &admissionv1.MatchResources{
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn,
			Values: append(webhook.SystemNamespaces(), ns),
		}}},
		ResourceRules: []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
			Operations: []admissionv1.OperationType{admissionv1.Create},
			Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		}}},
		MatchPolicy: ptr(admissionv1.Equivalent),
	}
	notHostNetwork := admissionv1.MatchCondition{Name: "not-host-network", Expression: `!(has(object.spec.hostNetwork) && object.spec.hostNetwork)`}
	notInjected := admissionv1.MatchCondition{Name: "not-injected", Expression: "!" + hasAnnotation("object", wellknown.StatusAnnotation)}

	vars := append(c.variables(), admissionv1.Variable{Name: "annotationError", Expression: c.annotationError()})
	p := &Policies{
		Params: &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: meta(ParamsName, ns),
			Data:       c.params,
		},
		Mutating: &admissionv1.MutatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicy"},
			ObjectMeta: meta(MutatingName, ""),
			Spec: admissionv1.MutatingAdmissionPolicySpec{
				ParamKind:          paramKind,
				MatchConstraints:   constraints,
				MatchConditions:    []admissionv1.MatchCondition{injectable(notHostNetwork, notInjected)},
				Variables:          append(slices.Clone(vars), admissionv1.Variable{Name: "firstError", Expression: c.firstError(false)}),
				Mutations:          c.mutations(),
				FailurePolicy:      &fail,
				ReinvocationPolicy: admissionv1.IfNeededReinvocationPolicy,
			},
		},
		Validating: &admissionv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: meta(ValidatingName, ""),
			Spec: admissionv1.ValidatingAdmissionPolicySpec{
				ParamKind:        paramKind,
				MatchConstraints: constraints,
				MatchConditions:  []admissionv1.MatchCondition{toValidate(notHostNetwork, notInjected)},
				Variables:        append(slices.Clone(vars), admissionv1.Variable{Name: "firstError", Expression: c.firstError(true)}),
				Validations: []admissionv1.Validation{{
					Expression:        `variables.firstError == ""`,
					MessageExpression: `variables.firstError`,
					Reason:            ptr(metav1.StatusReasonForbidden),
				}},
				FailurePolicy: &fail,
			},
		},
	}
	for _, sel := range bindingSelectors() {
		suffix := ""
		if sel.suffix != "" {
			suffix = "-" + sel.suffix
		}
		match := &admissionv1.MatchResources{NamespaceSelector: sel.namespace, ObjectSelector: sel.object}
		p.MutatingBindings = append(p.MutatingBindings, &admissionv1.MutatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicyBinding"},
			ObjectMeta: meta(MutatingName+suffix, ""),
			Spec:       admissionv1.MutatingAdmissionPolicyBindingSpec{PolicyName: MutatingName, ParamRef: paramRef, MatchResources: match},
		})
		p.ValidatingBindings = append(p.ValidatingBindings, &admissionv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
			ObjectMeta: meta(ValidatingName+suffix, ""),
			Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName: ValidatingName, ParamRef: paramRef, MatchResources: match.DeepCopy(),
				ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			},
		})
	}
	return p
}

func ptr[T any](v T) *T { return &v }

// bindingSelectors are the webhook configuration's two selections of pods
// (config/webhook): pods of labeled namespaces that are not labeled out,
// and pods labeled in anywhere else.
func bindingSelectors() []struct {
	suffix            string
	namespace, object *metav1.LabelSelector
} {
	l := wellknown.InjectLabel
	req := func(op metav1.LabelSelectorOperator, v string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: l, Operator: op, Values: []string{v}}}}
	}
	return []struct {
		suffix            string
		namespace, object *metav1.LabelSelector
	}{
		{"", req(metav1.LabelSelectorOpIn, wellknown.InjectLabelEnabled), req(metav1.LabelSelectorOpNotIn, "false")},
		{"object", req(metav1.LabelSelectorOpNotIn, wellknown.InjectLabelEnabled), req(metav1.LabelSelectorOpIn, "true")},
	}
}

// toValidate is the validating policy's match condition: a pod that
// carries tandem.dev/status has been checked already (the mutating policy
// injects only what passes every check), or was written so and is left
// alone but for its label, so the API server need not evaluate the
// validation for every injected pod.
func toValidate(notHostNetwork, notInjected admissionv1.MatchCondition) admissionv1.MatchCondition {
	return admissionv1.MatchCondition{Name: "to-validate", Expression: fmt.Sprintf("(%s) && ((%s) || (%s))", notHostNetwork.Expression, notInjected.Expression, badInjectLabel())}
}

// injectable is one match condition for the pods the mutating policy may
// inject: the API server evaluates every match condition of a policy for
// every pod, and again when it reinvokes the mutations, where one
// expression stops at the first false term (a pod injected already).
func injectable(first ...admissionv1.MatchCondition) admissionv1.MatchCondition {
	var terms []string
	for _, m := range append(first, skipConditions()...) {
		terms = append(terms, "("+m.Expression+")")
	}
	return admissionv1.MatchCondition{Name: "injectable", Expression: strings.Join(terms, " && ")}
}

// published reads a key the injector writes into the params at run time:
// absent until it does, and discovery's address only beside its CA, as the
// webhook passes agents both or neither.
func published(key string) string {
	v := func(k string) string { return fmt.Sprintf("params.data[?%s].orValue(\"\")", lit(k)) }
	if key == wellknown.ParamDiscoveryAddress {
		return fmt.Sprintf(`%s != "" ? %s : ""`, v(wellknown.ParamDiscoveryCA), v(key))
	}
	return v(key)
}

// variables: for every annotation, why the namespace's and the pod's value
// is wrong ("" when right); then every setting's value for this pod.
func (c *compiler) variables() []admissionv1.Variable {
	var vars []admissionv1.Variable
	add := func(name, expr string) { vars = append(vars, admissionv1.Variable{Name: name, Expression: expr}) }
	// Which pods: not in matchConditions, where namespaceObject is not set.
	add("selected", selected())
	add("podName", podNameExpr)
	for _, a := range c.annotations {
		v := strings.ToUpper(varName(a.key)[:1]) + varName(a.key)[1:]
		add("ns"+v+"Error", fmt.Sprintf("%s ? (%s) : \"\"", hasAnnotation("namespaceObject", a.Annotation), reason(a.kind, annotation("namespaceObject", a.Annotation), c.templates)))
		add("pod"+v+"Error", fmt.Sprintf("%s ? (%s) : \"\"", hasAnnotation("object", a.Annotation), reason(a.kind, annotation("object", a.Annotation), c.templates)))
	}
	value := func(key, ann string, k kind) string {
		def := `""`
		if _, ok := c.params[key]; ok {
			def = fmt.Sprintf("params.data[%s]", lit(key))
		}
		if ann == "" {
			return def
		}
		return fmt.Sprintf("%s ? %s : %s ? %s : %s", hasAnnotation("object", ann), annotation("object", ann),
			hasAnnotation("namespaceObject", ann), annotation("namespaceObject", ann), def)
	}
	add("template", value(keyTemplate, wellknown.AnnotationTemplate, kindTemplate))
	add("native", "("+value(keyNative, wellknown.AnnotationNativeSidecar, kindBool)+`) == "true"`)
	add("capture", value(keyCapture, wellknown.AnnotationCapture, kindCapture))
	for _, s := range settings {
		raw := value(s.key, s.annotation, s.kind)
		if s.kind == kindPublished {
			raw = published(s.key)
		}
		if canonical(s.kind, "x") == "x" {
			add(varName(s.key), raw)
			continue
		}
		add(varName(s.key)+"Written", raw)
		add(varName(s.key), canonical(s.kind, "variables."+varName(s.key)+"Written"))
	}
	return vars
}
