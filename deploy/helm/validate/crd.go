package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// crdSchema is one served version of a CustomResourceDefinition, ready to validate objects the
// way the API server does on create.
type crdSchema struct {
	structural *structuralschema.Structural
	validator  validation.SchemaValidator
	cel        *cel.Validator
}

func parseCRD(raw []byte) (map[schema.GroupVersionKind]*crdSchema, error) {
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
		return nil, fmt.Errorf("not a CustomResourceDefinition: %w", err)
	}
	out := map[schema.GroupVersionKind]*crdSchema{}
	for _, version := range crd.Spec.Versions {
		if !version.Served || version.Schema == nil || version.Schema.OpenAPIV3Schema == nil {
			continue
		}
		var internal apiextensions.JSONSchemaProps
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(version.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
			return nil, fmt.Errorf("%s: %w", version.Name, err)
		}
		structural, err := structuralschema.NewStructural(&internal)
		if err != nil {
			return nil, fmt.Errorf("%s: not a structural schema: %w", version.Name, err)
		}
		validator, _, err := validation.NewSchemaValidator(&internal)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", version.Name, err)
		}
		gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: version.Name, Kind: crd.Spec.Names.Kind}
		out[gvk] = &crdSchema{
			structural: structural,
			validator:  validator,
			cel:        cel.NewValidator(structural, true, celconfig.PerCallLimit),
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("CRD %s serves no version with a schema", crd.Name)
	}
	return out, nil
}

// validate checks one object: fields the schema does not know (which the API server would
// silently drop), the schema's validation and its CEL rules, and the object's metadata.
func (c *crdSchema) validate(data []byte) (map[string]interface{}, []string) {
	// Integers as int64, as the API server decodes them: CEL rules compare typed numbers.
	var obj map[string]interface{}
	if err := utiljson.Unmarshal(data, &obj); err != nil {
		return nil, []string{err.Error()}
	}
	var problems []string
	var meta metav1.ObjectMeta
	if raw, ok := obj["metadata"]; ok {
		b, _ := json.Marshal(raw)
		if err := yaml.UnmarshalStrict(b, &meta); err != nil {
			problems = append(problems, "metadata: "+err.Error())
		}
	}
	pruned := pruning.PruneWithOptions(runtime.DeepCopyJSON(obj), c.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	sort.Strings(pruned)
	for _, path := range pruned {
		problems = append(problems, fmt.Sprintf("unknown field %q", path))
	}
	for _, e := range validation.ValidateCustomResource(nil, obj, c.validator) {
		problems = append(problems, e.Error())
	}
	errs, _ := c.cel.Validate(context.Background(), nil, c.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	for _, e := range errs {
		problems = append(problems, e.Error())
	}
	problems = append(problems, checkKafkaTriggers(obj)...)
	return obj, problems
}

// The metadata keys KEDA's kafka scaler reads (pkg/scalers/kafka_scaler.go, v2.21.0). The CRD
// types trigger metadata as a map of strings, so a misspelt key would pass its schema and be
// ignored by KEDA: here it is an error.
var kafkaTriggerKeys = map[string]bool{
	"bootstrapServers": true, "consumerGroup": true, "topic": true, "partitionLimitation": true,
	"lagThreshold": true, "activationLagThreshold": true, "offsetResetPolicy": true,
	"allowIdleConsumers": true, "excludePersistentLag": true, "scaleToZeroOnInvalidOffset": true,
	"limitToPartitionsWithLag": true, "ensureEvenDistributionOfPartitions": true,
	"fullMetadata": true, "version": true, "tls": true, "unsafeSsl": true, "sasl": true,
	"saslTokenProvider": true, "bootstrapServersFromEnv": true, "consumerGroupFromEnv": true,
	"topicFromEnv": true,
}

func checkKafkaTriggers(obj map[string]interface{}) []string {
	spec, _ := obj["spec"].(map[string]interface{})
	triggers, _ := spec["triggers"].([]interface{})
	var problems []string
	for i, t := range triggers {
		trigger, _ := t.(map[string]interface{})
		if trigger["type"] != "kafka" {
			continue
		}
		metadata, _ := trigger["metadata"].(map[string]interface{})
		for key := range metadata {
			if !kafkaTriggerKeys[key] {
				problems = append(problems, fmt.Sprintf("spec.triggers[%d].metadata: %q is no setting of KEDA's kafka scaler", i, key))
			}
		}
		for _, key := range []string{"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} {
			if strings.TrimSpace(fmt.Sprint(metadata[key])) == "" || metadata[key] == nil {
				problems = append(problems, fmt.Sprintf("spec.triggers[%d].metadata.%s is not set", i, key))
			}
		}
	}
	return problems
}
