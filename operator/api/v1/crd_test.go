package v1

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestCRDsMatchTypes checks that the committed CRD manifests describe the Go
// types field by field (names and kinds), so a type changed without
// rerunning operator/hack/generate.sh fails here.
func TestCRDsMatchTypes(t *testing.T) {
	for _, c := range []struct {
		file string
		kind string
		obj  any
	}{
		{"ray.io_rayclusters.yaml", "RayCluster", RayCluster{}},
		{"ray.io_rayjobs.yaml", "RayJob", RayJob{}},
	} {
		t.Run(c.kind, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", c.file))
			if err != nil {
				t.Fatal(err)
			}
			var crd struct {
				Spec struct {
					Group string `json:"group"`
					Names struct {
						Kind string `json:"kind"`
					} `json:"names"`
					Versions []struct {
						Name   string `json:"name"`
						Schema struct {
							OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
						} `json:"schema"`
						Subresources map[string]any `json:"subresources"`
					} `json:"versions"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(b, &crd); err != nil {
				t.Fatal(err)
			}
			if crd.Spec.Group != GroupVersion.Group || crd.Spec.Names.Kind != c.kind || len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != GroupVersion.Version {
				t.Fatalf("CRD %s: group %q kind %q versions %d, want %s %s one version %s", c.file, crd.Spec.Group, crd.Spec.Names.Kind, len(crd.Spec.Versions), GroupVersion.Group, c.kind, GroupVersion.Version)
			}
			if _, ok := crd.Spec.Versions[0].Subresources["status"]; !ok {
				t.Errorf("CRD %s has no status subresource", c.file)
			}
			compareSchema(t, c.kind, reflect.TypeOf(c.obj), crd.Spec.Versions[0].Schema.OpenAPIV3Schema)
		})
	}
}

var ownPkg = reflect.TypeOf(RayCluster{}).PkgPath()

// compareSchema walks typ and schema together. Types of other packages
// (Kubernetes' own) are checked for presence only; schemaless fields (no
// type, unknown fields preserved) are not entered.
func compareSchema(t *testing.T, path string, typ reflect.Type, schema map[string]any) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if schema == nil {
		t.Errorf("%s: no schema", path)
		return
	}
	if _, typed := schema["type"]; !typed && schema["x-kubernetes-preserve-unknown-fields"] == true {
		return
	}
	if typ.PkgPath() != "" && typ.PkgPath() != ownPkg {
		return
	}
	want := map[reflect.Kind]string{
		reflect.String: "string", reflect.Bool: "boolean", reflect.Int32: "integer", reflect.Int64: "integer",
		reflect.Float32: "number", reflect.Float64: "number", reflect.Struct: "object", reflect.Map: "object", reflect.Slice: "array",
	}[typ.Kind()]
	if got, _ := schema["type"].(string); got != want {
		t.Errorf("%s: schema type %q, Go type %s wants %q", path, got, typ, want)
		return
	}
	switch typ.Kind() {
	case reflect.Map:
		sub, _ := schema["additionalProperties"].(map[string]any)
		compareSchema(t, path+"[*]", typ.Elem(), sub)
	case reflect.Slice:
		sub, _ := schema["items"].(map[string]any)
		compareSchema(t, path+"[]", typ.Elem(), sub)
	case reflect.Struct:
		props, _ := schema["properties"].(map[string]any)
		fields := map[string]reflect.Type{}
		collectFields(typ, fields)
		for name, ft := range fields {
			sub, ok := props[name].(map[string]any)
			if !ok {
				t.Errorf("%s.%s: in the Go type, not in the CRD", path, name)
				continue
			}
			compareSchema(t, path+"."+name, ft, sub)
		}
		var extra []string
		for name := range props {
			if _, ok := fields[name]; !ok {
				extra = append(extra, name)
			}
		}
		sort.Strings(extra)
		for _, name := range extra {
			t.Errorf("%s.%s: in the CRD, not in the Go type", path, name)
		}
	}
}

func collectFields(typ reflect.Type, out map[string]reflect.Type) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if name == "" && (f.Anonymous || strings.Contains(opts, "inline")) {
			collectFields(f.Type, out)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
}
