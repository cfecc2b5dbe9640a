// Package objects reads the Kubernetes objects the xDS translation works on
// (Services, EndpointSlices, TrafficPolicies, HTTPRoutes, GRPCRoutes) from a file as kubectl writes
// them: YAML documents separated by "---", or JSON, each an object or a List.
package objects

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// DefaultNamespace is given to objects without one, as kubectl does with
// its default context.
const DefaultNamespace = "default"

// maxListDepth bounds Lists nested in Lists.
const maxListDepth = 8

// Skipped is an object that was read but is not used by the translation.
type Skipped struct {
	Where      string // "<source>: document N (line L)[, item I]"
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	Reason     string
}

func (s Skipped) String() string {
	return fmt.Sprintf("%s: %s: ignored: %s", s.Where, describe(s.APIVersion, s.Kind, s.Namespace, s.Name), s.Reason)
}

var supported = map[string]string{ // kind -> apiVersion
	"Service":       "v1",
	"EndpointSlice": discoveryv1.SchemeGroupVersion.String(),
	"TrafficPolicy": v1alpha1.GroupVersion.String(),
	"HTTPRoute":     gatewayv1.GroupVersion.String(),
	"GRPCRoute":     gatewayv1.GroupVersion.String(),
}

// Read decodes every document of r; source names r in messages. It stops at
// the first document that cannot be decoded, with an error naming the
// document, its first line and the object. Unknown fields are errors, as
// kubectl's strict validation makes them.
func Read(r io.Reader, source string) (xds.Inputs, []Skipped, error) {
	var (
		in      xds.Inputs
		skipped []Skipped
	)
	docs, err := splitDocuments(r)
	if err != nil {
		return in, nil, fmt.Errorf("%s: %w", source, err)
	}
	n := 0
	for _, d := range docs {
		j, err := yaml.YAMLToJSON(d.text)
		if t := bytes.TrimSpace(j); err == nil && (len(t) == 0 || bytes.Equal(t, []byte("null"))) {
			continue // empty document or only comments: not counted
		}
		n++
		where := fmt.Sprintf("%s: document %d (line %d)", source, n, d.line)
		if err != nil {
			return in, nil, fmt.Errorf("%s: %s", where, fileLines(err.Error(), d.line))
		}
		if err := decode(j, where, 0, &in, &skipped); err != nil {
			return in, nil, err
		}
	}
	return in, skipped, nil
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

func decode(j []byte, where string, depth int, in *xds.Inputs, skipped *[]Skipped) error {
	var h header
	if err := json.Unmarshal(j, &h); err != nil {
		return fmt.Errorf("%s: not a Kubernetes object: %v", where, err)
	}
	if h.Kind == "" || h.APIVersion == "" {
		return fmt.Errorf("%s: not a Kubernetes object: apiVersion and kind must both be set", where)
	}
	what := describe(h.APIVersion, h.Kind, h.Metadata.Namespace, h.Metadata.Name)
	if strings.HasSuffix(h.Kind, "List") {
		if depth >= maxListDepth {
			return fmt.Errorf("%s: %s: Lists nested deeper than %d", where, what, maxListDepth)
		}
		for k, item := range h.Items {
			if err := decode(item, fmt.Sprintf("%s, item %d", where, k+1), depth+1, in, skipped); err != nil {
				return err
			}
		}
		return nil
	}
	want, ok := supported[h.Kind]
	if !ok {
		*skipped = append(*skipped, Skipped{Where: where, APIVersion: h.APIVersion, Kind: h.Kind,
			Namespace: h.Metadata.Namespace, Name: h.Metadata.Name, Reason: "not a Service, EndpointSlice, TrafficPolicy, HTTPRoute or GRPCRoute"})
		return nil
	}
	if h.APIVersion != want {
		*skipped = append(*skipped, Skipped{Where: where, APIVersion: h.APIVersion, Kind: h.Kind,
			Namespace: h.Metadata.Namespace, Name: h.Metadata.Name, Reason: fmt.Sprintf("apiVersion %s is not supported; use %s", h.APIVersion, want)})
		return nil
	}
	var err error
	switch h.Kind {
	case "Service":
		var o corev1.Service
		if err = strict(j, &o); err == nil {
			defaultNamespace(&o.Namespace)
			in.Services = append(in.Services, &o)
		}
	case "EndpointSlice":
		var o discoveryv1.EndpointSlice
		if err = strict(j, &o); err == nil {
			defaultNamespace(&o.Namespace)
			in.EndpointSlices = append(in.EndpointSlices, &o)
		}
	case "TrafficPolicy":
		var o v1alpha1.TrafficPolicy
		if err = strict(j, &o); err == nil {
			defaultNamespace(&o.Namespace)
			in.Policies = append(in.Policies, &o)
		}
	case "HTTPRoute":
		var o gatewayv1.HTTPRoute
		if err = strict(j, &o); err == nil {
			defaultNamespace(&o.Namespace)
			in.HTTPRoutes = append(in.HTTPRoutes, &o)
		}
	case "GRPCRoute":
		var o gatewayv1.GRPCRoute
		if err = strict(j, &o); err == nil {
			defaultNamespace(&o.Namespace)
			in.GRPCRoutes = append(in.GRPCRoutes, &o)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %s: %w", where, what, err)
	}
	return nil
}

// strict decodes like the API server: case-sensitive field names, and an
// unknown or duplicated field is an error.
func strict(j []byte, v any) error {
	strictErrs, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func defaultNamespace(ns *string) {
	if *ns == "" {
		*ns = DefaultNamespace
	}
}

func describe(apiVersion, kind, namespace, name string) string {
	s := apiVersion + " " + kind
	switch {
	case name == "":
		return s + " (unnamed)"
	case namespace == "":
		return s + " " + name
	default:
		return s + " " + namespace + "/" + name
	}
}

var yamlLine = regexp.MustCompile(`\bline (\d+)\b`)

// fileLines turns the YAML parser's line numbers, counted from the start of
// the document, into lines of the file.
func fileLines(msg string, docStart int) string {
	return yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		n, err := strconv.Atoi(strings.TrimPrefix(m, "line "))
		if err != nil {
			return m
		}
		return fmt.Sprintf("line %d", n+docStart-1)
	})
}

type document struct {
	line int // where the document starts, 1-based
	text []byte
}

// separator is a YAML document marker line: "---", alone or before the
// first content of the next document.
var separator = regexp.MustCompile(`^---(\s+(.*))?$`)

func splitDocuments(r io.Reader) ([]document, error) {
	var (
		docs []document
		cur  bytes.Buffer
		line int
		from = 1
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line++
		text := sc.Bytes()
		if m := separator.FindSubmatch(text); m != nil {
			docs = append(docs, document{line: from, text: bytes.Clone(cur.Bytes())})
			cur.Reset()
			from = line + 1
			if len(m[2]) == 0 {
				continue
			}
			from, text = line, m[2]
		}
		cur.Write(text)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	docs = append(docs, document{line: from, text: cur.Bytes()})
	return docs, nil
}
