package report

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Markers around the generated block of BENCHMARKS.md.
const (
	mdStart = "<!-- bench:results:start -->"
	mdEnd   = "<!-- bench:results:end -->"
)

// rewriteMarkdown replaces the text between the markers of path with
// block. A file without the markers gets the block appended; a missing
// file is created.
func rewriteMarkdown(path, block string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	out, err := replaceBlock(string(old), block)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	return nil
}

var errMarkers = errors.New("benchmark markers out of order or duplicated")

// replaceBlock puts block between the markers of doc.
func replaceBlock(doc, block string) (string, error) {
	si, ei := strings.Index(doc, mdStart), strings.Index(doc, mdEnd)
	switch {
	case si < 0 && ei < 0:
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		if doc != "" {
			doc += "\n"
		}
		return doc + mdStart + "\n" + block + mdEnd + "\n", nil
	case si < 0 || ei < 0 || ei < si ||
		strings.Count(doc, mdStart) != 1 || strings.Count(doc, mdEnd) != 1:
		return "", errMarkers
	}
	return doc[:si+len(mdStart)] + "\n" + block + doc[ei:], nil
}

// relPath is target relative to base, or target itself when that fails.
func relPath(base, target string) string {
	if r, err := filepath.Rel(base, target); err == nil {
		return r
	}
	return target
}
