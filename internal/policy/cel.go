package policy

import (
	"encoding/json"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// CEL text generation. Strings are quoted as JSON, which CEL reads the same.

func lit(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

func litList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = lit(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// varName is the CEL variable of a setting key: proxy-image → proxyImage.
func varName(key string) string {
	parts := strings.Split(key, "-")
	for i := 1; i < len(parts); i++ {
		parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
	}
	return strings.Join(parts, "")
}

// hasAnnotation and annotation read an annotation of obj (object or namespaceObject).
func hasAnnotation(obj, a string) string {
	return fmt.Sprintf("(has(%s.metadata.annotations) && %s in %s.metadata.annotations)", obj, lit(a), obj)
}

func annotation(obj, a string) string { return fmt.Sprintf("%s.metadata.annotations[%s]", obj, lit(a)) }

func hasLabel(obj, l, value string) string {
	return fmt.Sprintf("(has(%s.metadata.labels) && %s in %s.metadata.labels && %s.metadata.labels[%s] == %s)", obj, lit(l), obj, obj, lit(l), lit(value))
}

// items splits a comma-separated list as the injector's parsers do.
func items(x string) string { return fmt.Sprintf("%s.split(\",\").map(i, i.trim())", x) }

const (
	portForm = "a TCP port number from 1 to 65535"
	cidrForm = `an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8, a single address, or "*" for every address`
)

func emptyItem(x, form string) string {
	return fmt.Sprintf(`%s.exists(i, i == "") ? "item " + string(%s.indexOf("") + 1) + " of the list is empty; want a comma-separated list where each item is " + %s`,
		items(x), items(x), lit(form))
}

func portOK(i string) string {
	return fmt.Sprintf(`(%s.matches("^[0-9]{1,5}$") && int(%s) >= 1 && int(%s) <= 65535)`, i, i, i)
}

func cidrOK(i string) string {
	return fmt.Sprintf(`(%s == "*" || (%s.contains("/") ? isCIDR(%s) && string(cidr(%s).masked()) == string(cidr(%s)) : isIP(%s)))`, i, i, i, i, i, i)
}

// cidrsReason is "" when x is a list of CIDRs the capture parser accepts,
// else the parser's complaint.
func cidrsReason(x string) string {
	bad := fmt.Sprintf(`%s.filter(i, !%s)[0]`, items(x), cidrOK("i"))
	return fmt.Sprintf(`%s == "" ? "" : %s : %s.all(i, %s) ? "" : (%s.contains("/") && isCIDR(%s) ? strings.quote(%s) + " has bits set past the /" + string(cidr(%s).prefixLength()) + " prefix; the range it names is " + string(cidr(%s).masked()) + ", or did you mean " + string(cidr(%s).ip()) + (cidr(%s).ip().family() == 4 ? "/32" : "/128") + "?" : strings.quote(%s) + %s)`,
		x, emptyItem(x, cidrForm), items(x), cidrOK("i"), bad, bad, bad, bad, bad, bad, bad, bad, lit(" is not "+cidrForm))
}

func cidrsValue(x string) string {
	return fmt.Sprintf(`%s == "" ? "" : %s.map(i, i == "*" ? "0.0.0.0/0,::/0" : i.contains("/") ? string(cidr(i)) : string(ip(i)) + (ip(i).family() == 4 ? "/32" : "/128")).join(",")`, x, items(x))
}

// dnsLabelMessages are the API machinery's words for a bad namespace name.
func dnsLabelMessages() (tooLong, dots, pattern string) {
	return validation.IsDNS1123Label(strings.Repeat("a", validation.DNS1123LabelMaxLength+1))[0],
		validation.IsDNS1123Label("a.b")[0], validation.IsDNS1123Label("A")[0]
}

const (
	dnsLabelRE     = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	dnsSubdomainRE = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
)

// reason is a CEL expression: "" when x (a string expression) is a valid
// value of the setting's kind, else why not, in the injector's words.
func reason(k kind, x string, templates []string) string {
	switch k {
	case kindImage:
		return fmt.Sprintf(`%s == "" ? "empty" : %s.matches(%s) ? "contains a space or control character" : ""`, x, x, lit(`[\p{Z}\p{Cc}]`))
	case kindCPU, kindMemory:
		return fmt.Sprintf(`%s == "" ? "" : !isQuantity(%s) ? "not a quantity" : quantity(%s).isLessThan(quantity("0")) ? "negative" : ""`, x, x, x)
	case kindLogLevel:
		return fmt.Sprintf(`%s in %s ? "" : "unknown log level"`, x, litList(logLevels))
	case kindNamespaces:
		tooLong, dots, pattern := dnsLabelMessages()
		bad := fmt.Sprintf(`%s.filter(i, !(size(i) <= %d && i.matches(%s)))[0]`, items(x), validation.DNS1123LabelMaxLength, lit(dnsLabelRE))
		return fmt.Sprintf(`%s.trim() == "" || %s.all(i, size(i) <= %d && i.matches(%s)) ? "" : %s == "" ? "namespace \"\" (item " + string(%s.indexOf("") + 1) + " of the list) is empty; remove the stray comma" : strings.quote(%s) + " is not a namespace name: " + (size(%s) > %d ? %s + (%s.matches(%s) ? "" : "; ") : "") + (%s.matches(%s) ? "" : %s.matches(%s) ? %s : %s)`,
			x, items(x), validation.DNS1123LabelMaxLength, lit(dnsLabelRE), bad, items(x), bad,
			bad, validation.DNS1123LabelMaxLength, lit(tooLong), bad, lit(dnsLabelRE),
			bad, lit(dnsLabelRE), bad, lit(dnsSubdomainRE), lit(dots), lit(pattern))
	case kindPorts:
		bad := fmt.Sprintf(`%s.filter(i, !%s)[0]`, items(x), portOK("i"))
		return fmt.Sprintf(`%s == "" ? "" : %s : %s.all(i, %s) ? "" : strings.quote(%s) + %s`,
			x, emptyItem(x, portForm), items(x), portOK("i"), bad, lit(" is not "+portForm))
	case kindCIDRs:
		return cidrsReason(x)
	case kindIncludeCIDRs:
		return fmt.Sprintf(`%s.trim() == "*" ? "" : %s == "" ? "empty" : (%s)`, x, x, cidrsReason(x))
	case kindBool:
		return fmt.Sprintf(`%s in ["true", "false"] ? "" : "not a boolean"`, x)
	case kindCapture:
		return fmt.Sprintf(`%s in %s ? "" : "unknown capture mode"`, x, litList(captures))
	case kindTemplate:
		return fmt.Sprintf(`%s in %s ? "" : "no such template"`, x, litList(templates))
	case kindPublished:
		return `""`
	}
	panic(fmt.Sprintf("unknown setting kind %d", k))
}

// canonical is a CEL expression for the value the injector renders for x,
// a valid value: lists in their parsers' canonical form. Quantities stay as
// written; the API server stores them in canonical form.
func canonical(k kind, x string) string {
	switch k {
	case kindNamespaces:
		return fmt.Sprintf(`%s.trim() == "" ? "" : %s.join(",")`, x, items(x))
	case kindPorts:
		return fmt.Sprintf(`%s == "" ? "" : %s.map(i, string(int(i))).join(",")`, x, items(x))
	case kindCIDRs:
		return cidrsValue(x)
	case kindIncludeCIDRs:
		return fmt.Sprintf(`%s.trim() == "*" ? "*" : %s`, x, cidrsValue(x))
	}
	return x
}

var (
	logLevels = []string{"debug", "info", "warn", "error"}
	captures  = []string{wellknown.CaptureInit, wellknown.CaptureCNI}
)

// podName names the pod in messages as the injector does (variables.podName).
const podNameExpr = `(has(object.metadata.name) && object.metadata.name != "" ? strings.quote(object.metadata.name) : has(object.metadata.generateName) && object.metadata.generateName != "" ? strings.quote(object.metadata.generateName + "<generated>") : "(unnamed)")`

// selected is true for a pod the injector would consider (it still checks
// the pod's label value): labeled in, or in a labeled namespace and not
// labeled out, or with a label value it must refuse.
func selected() string {
	l := wellknown.InjectLabel
	return fmt.Sprintf(`%s || (%s && !%s) || (%s)`,
		hasLabel("object", l, "true"), hasLabel("namespaceObject", l, wellknown.InjectLabelEnabled), hasLabel("object", l, "false"), badInjectLabel())
}

// badInjectLabel is true for a pod whose tandem.dev/inject label is neither
// "true" nor "false", which the injector refuses.
func badInjectLabel() string {
	l := lit(wellknown.InjectLabel)
	return fmt.Sprintf(`has(object.metadata.labels) && %s in object.metadata.labels && !(object.metadata.labels[%s] in ["true", "false"])`, l, l)
}
