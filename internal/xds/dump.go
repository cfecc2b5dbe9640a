package xds

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// JSON renders the resources for people and golden files: grouped by type,
// each resource in protojson with its type URL under "@type" and Envoy's
// field names, indented, byte-for-byte stable.
func (r *Resources) JSON() ([]byte, error) {
	var doc struct {
		Listeners []json.RawMessage `json:"listeners"`
		Routes    []json.RawMessage `json:"routes"`
		Clusters  []json.RawMessage `json:"clusters"`
		Endpoints []json.RawMessage `json:"endpoints"`
	}
	for _, g := range []struct {
		in  []types.Resource
		out *[]json.RawMessage
	}{{r.Listeners, &doc.Listeners}, {r.Routes, &doc.Routes}, {r.Clusters, &doc.Clusters}, {r.Endpoints, &doc.Endpoints}} {
		*g.out = make([]json.RawMessage, 0, len(g.in))
		for _, res := range g.in {
			raw, err := resourceJSON(res)
			if err != nil {
				return nil, err
			}
			*g.out = append(*g.out, raw)
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
