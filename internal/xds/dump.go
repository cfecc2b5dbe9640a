package xds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// Kinds are the groups of the JSON document, in its order.
var Kinds = []string{"listeners", "routes", "clusters", "endpoints"}

// JSON renders the resources for people and golden files: grouped by type,
// each resource in protojson with its type URL under "@type" and Envoy's
// field names, indented, byte-for-byte stable.
func (r *Resources) JSON() ([]byte, error) { return r.JSONOf(Kinds...) }

// JSONOf is JSON with only the groups of kinds (of Kinds).
func (r *Resources) JSONOf(kinds ...string) ([]byte, error) {
	var doc struct {
		Listeners *[]json.RawMessage `json:"listeners,omitempty"`
		Routes    *[]json.RawMessage `json:"routes,omitempty"`
		Clusters  *[]json.RawMessage `json:"clusters,omitempty"`
		Endpoints *[]json.RawMessage `json:"endpoints,omitempty"`
	}
	for _, g := range []struct {
		kind string
		in   []types.Resource
		out  **[]json.RawMessage
	}{{"listeners", r.Listeners, &doc.Listeners}, {"routes", r.Routes, &doc.Routes}, {"clusters", r.Clusters, &doc.Clusters}, {"endpoints", r.Endpoints, &doc.Endpoints}} {
		if !slices.Contains(kinds, g.kind) {
			continue
		}
		list := make([]json.RawMessage, 0, len(g.in))
		*g.out = &list
		for _, res := range g.in {
			raw, err := resourceJSON(res)
			if err != nil {
				return nil, err
			}
			list = append(list, raw)
		}
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// YAML is JSON as YAML (keys sorted).
func (r *Resources) YAML() ([]byte, error) {
	j, err := r.JSON()
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}

func resourceJSON(res types.Resource) (json.RawMessage, error) {
	a, err := anypb.New(res)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", resourceKind(res), resourceName(res), err)
	}
	out, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", resourceKind(res), resourceName(res), err)
	}
	// protojson varies its whitespace on purpose; compact it for stable output.
	var compact bytes.Buffer
	if err := json.Compact(&compact, out); err != nil {
		return nil, err
	}
	return compact.Bytes(), nil
}
