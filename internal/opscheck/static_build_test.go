//go:build opsbuild

// Run by `make test-compose` (build tag opsbuild): the Dockerfile's build
// command produces static binaries that run in distroless/static.
package opscheck

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestStaticBinaries(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("go", "build", "-ldflags", "-s -w", "-o", out+string(filepath.Separator),
		"./api", "./outbox-relay", "./projector", "./deploy/docker/healthcheck")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build command fails: %v\n%s", err, b)
	}
	for _, bin := range []string{"api", "outbox-relay", "projector", "healthcheck"} {
		f, err := elf.Open(filepath.Join(out, bin))
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s is dynamically linked (program header %v): it would not start in distroless/static", bin, p.Type)
			}
		}
		f.Close()
	}
}
