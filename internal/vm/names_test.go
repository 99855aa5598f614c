package vm

import (
	"regexp"
	"testing"

	"banger/internal/model"
)

func TestRandomName(t *testing.T) {
	shape := regexp.MustCompile(`^[a-z]+-[a-z]+-[0-9]{1,2}$`)
	const draws = 2000
	seen := map[string]bool{}
	for range draws {
		name := randomName()
		if err := model.ValidateName(name); err != nil {
			t.Fatalf("randomName() = %q: got ValidateName error %v, want nil", name, err)
		}
		if !shape.MatchString(name) {
			t.Fatalf("randomName() = %q: got a name not shaped like %s", name, shape)
		}
		seen[name] = true
	}
	// 24*24*100 combinations: a handful of repeats is fine, a stuck
	// generator is not.
	if len(seen) < draws/2 {
		t.Errorf("distinct names in %d draws: got %d, want at least %d", draws, len(seen), draws/2)
	}
}

func TestNameLists(t *testing.T) {
	tests := []struct {
		name string
		list []string
	}{
		{name: "adjectives", list: adjectives},
		{name: "nouns", list: nouns},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.list) == 0 {
				t.Fatal("got an empty list, want words")
			}
			seen := map[string]bool{}
			for _, w := range tt.list {
				if err := model.ValidateName(w); err != nil {
					t.Errorf("word %q: got ValidateName error %v, want nil", w, err)
				}
				if seen[w] {
					t.Errorf("word %q: got it twice, want each once", w)
				}
				seen[w] = true
			}
		})
	}
}
