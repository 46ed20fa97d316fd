package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// TestExamples keeps the configurations in examples/ valid.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if _, err := NewPlan(c); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
