package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestFloorPatchApplies keeps bench/floor.patch, the probe behind the
// README's floor measurement, applicable to the code it describes: a change
// to the lines it touches fails here until the patch is made again.
func TestFloorPatchApplies(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
		t.Skip("not in a git checkout")
	}
	cmd := exec.Command(git, "apply", "--check", filepath.Join("bench", "floor.patch"))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bench/floor.patch no longer applies: %v\n%s", err, out)
	}
}
