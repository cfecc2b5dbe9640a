package policy

import (
	"encoding/json"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

// firstError is the CEL for the injector's first refusal of the pod, in
// the order the injector checks: the pod's label, the namespace's
// annotations, the pod's, requests against limits, then names the sidecars
// would add that the pod already uses. "" means none. The validating
// policy sees the pod after mutation: one that carries a status is past
// all but the label check, and so is one the injector skips.
func (c *compiler) firstError(validating bool) string {
	type check struct{ cond, msg string }
	checks := []check{{"!variables.selected", `""`}}
	l := lit(wellknown.InjectLabel)
	checks = append(checks, check{
		badInjectLabel(),
		fmt.Sprintf(`"label %s=" + strings.quote(object.metadata.labels[%s]) + " on pod " + %s + %s`, wellknown.InjectLabel, l, "variables.podName",
			lit(` is invalid; accepted: "true" (inject, even in a namespace without the label) or "false" (never inject)`)),
	})
	if validating {
		// The mutating policy's matchConditions leave a skipped pod alone;
		// the injector skips it before it reads the annotations.
		checks = append(checks, check{hasAnnotation("object", wellknown.StatusAnnotation), `""`}, check{"(" + skippedCEL() + ")", `""`})
	}
	checks = append(checks, check{`variables.annotationError != ""`, "variables.annotationError"})
	for _, p := range []struct{ what, req, limit, reqName, limitName string }{
		{"proxy CPU", "proxy-cpu", "proxy-cpu-limit", wellknown.AnnotationProxyCPU, wellknown.AnnotationProxyCPULimit},
		{"proxy memory", "proxy-memory", "proxy-memory-limit", wellknown.AnnotationProxyMemory, wellknown.AnnotationProxyMemoryLimit},
	} {
		req, limit := "variables."+varName(p.req), "variables."+varName(p.limit)
		checks = append(checks, check{
			fmt.Sprintf(`%s != "" && %s != "" && quantity(%s).compareTo(quantity(%s)) > 0`, req, limit, req, limit),
			fmt.Sprintf(`"pod " + %s + ": the %s request " + %s + " (%s) is more than its limit " + %s + " (%s); accepted: a request at most its limit"`,
				"variables.podName", p.what, req, p.reqName, limit, p.limitName),
		})
	}
	var b strings.Builder
	for _, ch := range checks {
		fmt.Fprintf(&b, "%s ?\n  %s :\n", ch.cond, ch.msg)
	}
	for _, vr := range c.variants {
		fmt.Fprintf(&b, "%s ? (%s%s) :\n", vr.selector(), vr.podSecurityRefusal(), vr.clashes())
	}
	b.WriteString(`""`)
	return b.String()
}

// annotationError is the CEL for the first invalid annotation, the
// namespace's before the pod's ("" for none). A pod and namespace without
// any of the injector's annotations, most of them, skip every check.
func (c *compiler) annotationError() string {
	keys := make([]string, len(c.annotations))
	for i, a := range c.annotations {
		keys[i] = a.Annotation
	}
	annotated := func(obj string) string {
		return fmt.Sprintf("(has(%s.metadata.annotations) && %s.exists(k, k in %s.metadata.annotations))", obj, litList(keys), obj)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "!(%s || %s) ? \"\" :\n", annotated("namespaceObject"), annotated("object"))
	for _, src := range []struct{ prefix, obj, on string }{
		{"ns", "namespaceObject", `"namespace " + strings.quote(namespaceObject.metadata.name)`},
		{"pod", "object", `"pod " + variables.podName`},
	} {
		for _, a := range c.annotations {
			v := "variables." + src.prefix + strings.ToUpper(varName(a.key)[:1]) + varName(a.key)[1:] + "Error"
			fmt.Fprintf(&b, "%s != \"\" ?\n  \"annotation %s=\" + strings.quote(%s) + \" on \" + %s + \" is invalid: \" + %s + %s :\n",
				v, a.Annotation, annotation(src.obj, a.Annotation), src.on, v, lit("; accepted: "+a.Accepted))
		}
	}
	b.WriteString(`""`)
	return b.String()
}

func (vr *variant) selector() string {
	return fmt.Sprintf("variables.template == %s && variables.native == %t && variables.capture == %s", lit(vr.template), vr.native, lit(vr.capture))
}

// podSecurityRefusal refuses the variant's sidecars in a namespace whose
// Pod Security level forbids them, as the injector does before it looks
// for clashes: CEL conditions, each followed by " ? message :".
func (vr *variant) podSecurityRefusal() string {
	l := lit(webhook.PodSecurityEnforceLabel)
	var b strings.Builder
	for _, level := range webhook.PodSecurityLevels {
		msg := vr.podSecurity[level]
		if msg == "" {
			continue
		}
		var parts []string
		for i, s := range strings.Split(msg, podMarker) {
			if i > 0 {
				parts = append(parts, "variables.podName")
			}
			for j, t := range strings.Split(s, nsMarker) {
				if j > 0 {
					parts = append(parts, "strings.quote(namespaceObject.metadata.name)")
				}
				if t != "" {
					parts = append(parts, lit(t))
				}
			}
		}
		fmt.Fprintf(&b, "has(namespaceObject.metadata.labels) && %s in namespaceObject.metadata.labels && namespaceObject.metadata.labels[%s] == %s ?\n    %s :\n  ",
			l, l, lit(level), strings.Join(parts, " + "))
	}
	return b.String()
}

func names(ns []*node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, stringField(n, "name"))
	}
	return out
}

// stringField is the literal text of a string field of n ("" when not literal).
func stringField(n *node, key string) string {
	f := n.fields[key]
	if f == nil || f.kind != nodeString || len(f.parts) != 1 || f.parts[0].setting >= 0 {
		return ""
	}
	return f.parts[0].text
}

// clashes refuses a pod that already has what the variant would add, in the injector's words.
func (vr *variant) clashes() string {
	reservedContainers, reservedVolumes := webhook.ReservedNames()
	cs := litList(unique(append(reservedContainers, append(append(names(vr.initFirst), names(vr.initLast)...), names(vr.containersFirst)...)...)))
	vs := litList(unique(append(reservedVolumes, names(vr.volumes)...)))
	fix := lit(" but no " + wellknown.StatusAnnotation + " annotation; these names are reserved for Tandem's sidecars: rename it, or opt the pod out with the label " + wellknown.InjectLabel + "=false")
	var checks []string
	for _, l := range []struct{ field, kind, list string }{
		{"initContainers", "an init container", cs}, {"containers", "a container", cs},
		{"ephemeralContainers", "an ephemeral container", cs}, {"volumes", "a volume", vs},
	} {
		checks = append(checks, fmt.Sprintf(`has(object.spec.%s) && object.spec.%s.exists(c, c.name in %s) ?
    "pod " + %s + " already has %s named " + strings.quote(object.spec.%s.filter(c, c.name in %s)[0].name) + %s`,
			l.field, l.field, l.list, "variables.podName", l.kind, l.field, l.list, fix))
	}
	env := litList(names(vr.appEnv))
	var mounts []string
	for _, m := range vr.appMounts {
		mounts = append(mounts, litList([]string{stringField(m, "mountPath"), stringField(m, "name")}))
	}
	mountList := "[" + strings.Join(mounts, ", ") + "]"
	if len(vr.appEnv)+len(vr.appMounts) > 0 {
		envClash := fmt.Sprintf(`(has(c.env) && c.env.exists(x, x.name in %s))`, env)
		mountClash := fmt.Sprintf(`(has(c.volumeMounts) && %s.exists(m, c.volumeMounts.exists(x, x.mountPath == m[0])))`, mountList)
		hint := lit("; remove it, or choose another template with the annotation " + wellknown.AnnotationTemplate)
		moveHint := lit("; move it, or choose another template with the annotation " + wellknown.AnnotationTemplate)
		// The injector checks init containers first: they get the settings too.
		for _, f := range []string{"initContainers", "containers"} {
			checks = append(checks, fmt.Sprintf(`has(object.spec.%s) && object.spec.%s.exists(c, %s || %s) ?
    object.spec.%s.filter(c, %s || %s).map(c, %s ?
      "container " + strings.quote(c.name) + " of pod " + %s + " already sets the environment variable " + %s.filter(n, c.env.exists(x, x.name == n))[0] + ", which the injection sets" + %s :
      "container " + strings.quote(c.name) + " of pod " + %s + " already mounts something at " + %s.filter(m, c.volumeMounts.exists(x, x.mountPath == m[0]))[0][0] + ", where the injection mounts the volume " + %s.filter(m, c.volumeMounts.exists(x, x.mountPath == m[0]))[0][1] + %s)[0]`,
				f, f, envClash, mountClash, f, envClash, mountClash, envClash, "variables.podName", env, hint, "variables.podName", mountList, mountList, moveHint))
		}
	}
	return strings.Join(checks, " :\n  ") + ` : ""`
}

func unique(ss []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// escapeKey escapes a JSON pointer segment.
func escapeKey(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// mutations: one JSON patch whose operations are those of the variant the
// pod renders (none when it renders none). One expression, not one per
// variant: the API server evaluates the variables afresh and encodes,
// patches, decodes and defaults the pod once for every mutation, even an
// empty one, and that made up most of the policies' cost per pod.
func (c *compiler) mutations() []admissionv1.Mutation {
	var b strings.Builder
	b.WriteString("!(variables.selected && variables.firstError == \"\") ? [] :\n")
	for _, vr := range c.variants {
		fmt.Fprintf(&b, "%s ?\n%s :\n", vr.selector(), vr.patch())
	}
	b.WriteString("[]")
	return []admissionv1.Mutation{{
		PatchType: admissionv1.PatchTypeJSONPatch,
		JSONPatch: &admissionv1.JSONPatch{Expression: b.String()},
	}}
}

// patch is the CEL list of JSON patch operations that inject the variant.
// Every list is made to exist before anything is inserted into it; the
// pod's own containers get the app settings before containers are
// inserted in front of them, so their indexes still hold.
func (vr *variant) patch() string {
	var groups []string
	op := func(path, value string) string {
		return fmt.Sprintf("JSONPatch{op: \"add\", path: %s, value: %s}", path, value)
	}
	ensure := func(field string) string {
		return fmt.Sprintf("(has(object.spec.%s) ? [] : [%s])", field, op(lit("/spec/"+field), "[]"))
	}
	// Annotations: the status, and kubectl's default container when the
	// sidecars go in front of the app's.
	setDefault := "false"
	if len(vr.containersFirst) > 0 {
		setDefault = fmt.Sprintf(`(!%s && size(object.spec.containers) > 0)`, hasAnnotation("object", webhook.DefaultContainerAnnotation))
	}
	status := vr.status()
	statusExpr := fmt.Sprintf(`%s + (%s ? %s : "") + "}"`, lit(status), setDefault, lit(`,"annotations":[`+mustJSON(webhook.DefaultContainerAnnotation)+`]`))
	groups = append(groups, fmt.Sprintf(`(has(object.metadata.annotations) ? [%s] : [%s])`,
		op(lit("/metadata/annotations/"+escapeKey(wellknown.StatusAnnotation)), statusExpr),
		op(lit("/metadata/annotations"), fmt.Sprintf("{%s: %s}", lit(wellknown.StatusAnnotation), statusExpr))))
	if len(vr.containersFirst) > 0 {
		groups = append(groups, fmt.Sprintf(`(%s ? [%s] : [])`, setDefault,
			op(lit("/metadata/annotations/"+escapeKey(webhook.DefaultContainerAnnotation)), "object.spec.containers[0].name")))
	}
	// App settings on each of the pod's own containers, init containers
	// and native sidecars included, before any container is inserted.
	for _, list := range []string{"initContainers", "containers"} {
		for _, app := range []struct {
			field string
			items []*node
		}{{"env", vr.appEnv}, {"volumeMounts", vr.appMounts}} {
			if len(app.items) == 0 {
				continue
			}
			typ := "Object.spec." + list + "." + app.field
			groups = append(groups, fmt.Sprintf(`(has(object.spec.%s) ? object.spec.%s.transformList(i, c, !has(c.%s), %s) : [])`, list, list, app.field,
				op(fmt.Sprintf(`"/spec/%s/" + string(i) + "/%s"`, list, app.field), "[]")))
			for _, it := range app.items {
				groups = append(groups, fmt.Sprintf("(has(object.spec.%s) ? object.spec.%s.transformList(i, c, %s) : [])", list, list,
					op(fmt.Sprintf(`"/spec/%s/" + string(i) + "/%s/-"`, list, app.field), expr(it, typ, "  "))))
			}
		}
	}
	var ops []string
	for i, it := range vr.containersFirst {
		ops = append(ops, op(lit(fmt.Sprintf("/spec/containers/%d", i)), expr(it, "Object.spec.containers", "  ")))
	}
	if len(ops) > 0 {
		groups = append(groups, "[\n"+strings.Join(ops, ",\n")+"\n]")
	}
	if len(vr.initFirst)+len(vr.initLast) > 0 {
		groups = append(groups, ensure("initContainers"))
		ops = nil
		for i, it := range vr.initFirst {
			ops = append(ops, op(lit(fmt.Sprintf("/spec/initContainers/%d", i)), expr(it, "Object.spec.initContainers", "  ")))
		}
		for _, it := range vr.initLast {
			ops = append(ops, op(lit("/spec/initContainers/-"), expr(it, "Object.spec.initContainers", "  ")))
		}
		groups = append(groups, "[\n"+strings.Join(ops, ",\n")+"\n]")
	}
	if len(vr.volumes) > 0 {
		groups = append(groups, ensure("volumes"))
		ops = nil
		for _, it := range vr.volumes {
			ops = append(ops, op(lit("/spec/volumes/-"), expr(it, "Object.spec.volumes", "  ")))
		}
		groups = append(groups, "[\n"+strings.Join(ops, ",\n")+"\n]")
	}
	return strings.Join(groups, " +\n")
}

// status is the start of the tandem.dev/status JSON, as the injector
// writes it but with an empty configHash: the hash of the rendered text
// cannot be computed in CEL.
func (vr *variant) status() string {
	st := webhook.Status{Template: vr.template, NativeSidecar: vr.native,
		InitContainers: append(names(vr.initFirst), names(vr.initLast)...), Containers: names(vr.containersFirst),
		Volumes: names(vr.volumes), Env: names(vr.appEnv)}
	for _, m := range vr.appMounts {
		st.VolumeMounts = append(st.VolumeMounts, stringField(m, "name"))
	}
	s := mustJSON(st)
	return strings.TrimSuffix(s, "}")
}

func mustJSON(v any) string {
	out, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(out)
}

// expr is the CEL that builds n; typ names the CEL type of an object.
func expr(n *node, typ, indent string) string {
	switch n.kind {
	case nodeObject, nodeMap:
		var fields []string
		for _, k := range n.keys {
			f := n.fields[k]
			name := k
			if n.kind == nodeMap {
				name = lit(k)
			}
			fields = append(fields, indent+"  "+optional(f, name+": ", expr(f, typ+"."+k, indent+"  ")))
		}
		open := "{"
		if n.kind == nodeObject {
			open = typ + "{"
		}
		if len(fields) == 0 {
			return open + "}"
		}
		return open + "\n" + strings.Join(fields, ",\n") + "\n" + indent + "}"
	case nodeList:
		var items []string
		for _, it := range n.items {
			items = append(items, optional(it, "", expr(it, typ, indent)))
		}
		return "[" + strings.Join(items, ", ") + "]"
	case nodeString:
		var parts []string
		for _, p := range n.parts {
			if p.setting < 0 {
				parts = append(parts, lit(p.text))
			} else {
				// Variables are dyn to the type checker; list literals must be homogeneous.
				parts = append(parts, "string(variables."+varName(settings[p.setting].key)+")")
			}
		}
		if len(parts) == 0 {
			return `""`
		}
		return strings.Join(parts, " + ")
	default:
		return string(n.lit)
	}
}

// optional writes a field or list item that may be absent with CEL's optional syntax.
func optional(n *node, prefix, value string) string {
	cond := presenceExpr(n)
	if cond == "" {
		return prefix + value
	}
	return fmt.Sprintf("?%s((%s) ? optional.of(%s) : optional.none())", prefix, cond, value)
}

// presenceExpr is the CEL condition for n to be present, "" for always.
func presenceExpr(n *node) string {
	var conds []string
	for _, k := range n.cond {
		conds = append(conds, fmt.Sprintf(`variables.%s != ""`, varName(settings[k].key)))
	}
	if n.anyChild {
		var any []string
		for _, c := range n.children() {
			if e := presenceExpr(c); e != "" {
				any = append(any, "("+e+")")
			}
		}
		conds = append(conds, "("+strings.Join(any, " || ")+")")
	}
	return strings.Join(conds, " && ")
}
