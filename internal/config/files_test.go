package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckSecretFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "api-key")
	if err := os.WriteFile(p, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckSecretFile("API_KEYS_FILE", p); err != nil {
		t.Fatalf("mode 0600: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o602, 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		err := CheckSecretFile("API_KEYS_FILE", p)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+p) || !strings.Contains(err.Error(), "API_KEYS_FILE") {
			t.Errorf("mode %04o: err %v, want a refusal naming API_KEYS_FILE and saying chmod 600", mode, err)
		}
	}
	if err := CheckSecretFile("API_KEYS_FILE", filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "API_KEYS_FILE") {
		t.Errorf("missing file: %v", err)
	}
	if err := CheckSecretFile("API_KEYS_FILE", dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
}

func TestCheckStateDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckStateDir(dir); err != nil {
		t.Fatalf("own 0755 dir: %v", err)
	}
	for _, mode := range []os.FileMode{0o775, 0o757, 0o777} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := CheckStateDir(dir); err == nil || !strings.Contains(err.Error(), "chmod go-w "+dir) {
			t.Errorf("mode %04o: err %v, want a refusal saying chmod go-w", mode, err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 { // root can hand the dir to someone else
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := CheckStateDir(dir); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") || !strings.Contains(err.Error(), "chown 0 "+dir) {
			t.Errorf("dir of another user: err %v, want a refusal naming the owner and the fix", err)
		}
		_ = os.Chown(dir, 0, 0)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckStateDir(link); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("symlink: %v", err)
	}
}
