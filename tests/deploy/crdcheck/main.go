// crdcheck decodes the prometheus-operator resources (ServiceMonitor, PodMonitor) of a rendered
// kustomization, read as YAML documents on stdin, into the operator's own Go types with strict
// decoding: an unknown or misspelt field, or a value of the wrong type, is an error. Other kinds
// are skipped (tests/deploy validates them against the Kubernetes schemas). Prints one line per
// resource checked; exits 1 on the first invalid one.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

func main() {
	data, err := io.ReadAll(bufio.NewReader(os.Stdin))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta typeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			fail(i, "?", err)
		}
		var target any
		switch {
		case meta.APIVersion == "monitoring.coreos.com/v1" && meta.Kind == "ServiceMonitor":
			target = &monitoringv1.ServiceMonitor{}
		case meta.APIVersion == "monitoring.coreos.com/v1" && meta.Kind == "PodMonitor":
			target = &monitoringv1.PodMonitor{}
		default:
			continue
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			fail(i, meta.Kind, err)
		}
		fmt.Printf("ok %s (document %d)\n", meta.Kind, i)
	}
}

func fail(i int, kind string, err error) {
	fmt.Printf("invalid %s (document %d): %v\n", kind, i, err)
	os.Exit(1)
}
