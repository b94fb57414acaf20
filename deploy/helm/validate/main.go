// Command validate checks a rendered Helm chart (a stream of YAML documents, as `helm template`
// prints it) the way an API server would, before any cluster sees it:
//
//   - every object of a built-in kind is decoded strictly against the k8s.io/api types (unknown
//     and duplicate fields are errors), and so is a PodMonitor against the Prometheus
//     Operator's types;
//   - every custom resource of a CRD in -crds (KEDA's ScaledObject and TriggerAuthentication) is
//     checked against that CRD's schema: unknown fields, the OpenAPI validation and the CEL
//     rules, with the API server's own code (k8s.io/apiextensions-apiserver);
//   - a kind neither knows is an error;
//   - every container sets resources, every long-running container probes, every pod runs
//     non-root with a read-only root filesystem and no privileges, and every reference between
//     the objects (scale targets, selectors, named ports) resolves.
//
// Usage: validate -crds DIR [FILE ...] (standard input without FILE). Exit 0: all good; 1: the
// problems found, one per line on standard error; 2: usage or I/O error.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// object is one rendered document, decoded.
type object struct {
	source string // file and document number, for messages
	gvk    schema.GroupVersionKind
	name   string
	typed  runtime.Object         // built-in and Prometheus Operator kinds
	custom map[string]interface{} // kinds of a CRD
}

func main() {
	crdDir := flag.String("crds", "", "directory of CustomResourceDefinition YAML files")
	flag.Parse()
	if *crdDir == "" {
		fmt.Fprintln(os.Stderr, "usage: validate -crds DIR [FILE ...]")
		os.Exit(2)
	}
	crds, err := loadCRDs(*crdDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate:", err)
		os.Exit(2)
	}
	inputs := flag.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	var problems []string
	var objects []object
	decoder := serializer.NewCodecFactory(newScheme(), serializer.EnableStrict).UniversalDeserializer()
	for _, input := range inputs {
		docs, err := readDocuments(input)
		if err != nil {
			fmt.Fprintln(os.Stderr, "validate:", err)
			os.Exit(2)
		}
		for i, doc := range docs {
			source := fmt.Sprintf("%s#%d", input, i+1)
			obj, errs := decode(source, doc, decoder, crds)
			for _, e := range errs {
				problems = append(problems, fmt.Sprintf("%s: %s", obj.describe(), e))
			}
			if obj.typed != nil || obj.custom != nil {
				objects = append(objects, obj)
			}
		}
	}
	if len(objects) == 0 && len(problems) == 0 {
		problems = append(problems, "no object found in the input")
	}
	problems = append(problems, lint(objects)...)
	if len(problems) > 0 {
		sort.Strings(problems)
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, p)
		}
		fmt.Fprintf(os.Stderr, "validate: %d problem(s) in %d object(s)\n", len(problems), len(objects))
		os.Exit(1)
	}
	fmt.Printf("validate: %d object(s) valid\n", len(objects))
}

func (o object) describe() string {
	kind := o.gvk.Kind
	if kind == "" {
		kind = "object"
	}
	return fmt.Sprintf("%s %s %q", o.source, kind, o.name)
}

// readDocuments splits a YAML stream; documents holding only comments are dropped.
func readDocuments(path string) ([][]byte, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if !onlyComments(doc) {
			docs = append(docs, doc)
		}
	}
}

func onlyComments(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line != "---" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

// decode turns one document into an object, strictly; the errors say what is wrong with it.
func decode(source string, doc []byte, decoder runtime.Decoder, crds map[schema.GroupVersionKind]*crdSchema) (object, []string) {
	obj := object{source: source}
	// YAMLToJSONStrict refuses duplicate keys, which plain YAML decoding would let the last win.
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return obj, []string{"not valid YAML: " + err.Error()}
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(data, &head); err != nil {
		return obj, []string{"no apiVersion and kind: " + err.Error()}
	}
	obj.gvk = schema.FromAPIVersionAndKind(head.APIVersion, head.Kind)
	obj.name = head.Metadata.Name
	if crd, ok := crds[obj.gvk]; ok {
		custom, errs := crd.validate(data)
		obj.custom = custom
		return obj, errs
	}
	typed, _, err := decoder.Decode(data, nil, nil)
	if err != nil {
		if runtime.IsNotRegisteredError(err) {
			return obj, []string{fmt.Sprintf("unknown kind %s: neither a built-in type nor a CRD in -crds", obj.gvk)}
		}
		return obj, []string{"does not decode strictly: " + err.Error()}
	}
	obj.typed = typed
	return obj, nil
}

func loadCRDs(dir string) (map[schema.GroupVersionKind]*crdSchema, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no CRD (*.yaml) in %s", dir)
	}
	out := map[schema.GroupVersionKind]*crdSchema{}
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		schemas, err := parseCRD(bytes.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for gvk, s := range schemas {
			out[gvk] = s
		}
	}
	return out, nil
}
