package projector

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"cqrsflow/bench/internal/cli"
	"cqrsflow/bench/internal/result"
	"cqrsflow/internal/esindex"
)

func TestParseSettings(t *testing.T) {
	t.Setenv(result.QuickEnv, "1")
	s, err := parseSettings([]string{"-workers", "1, 3"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Events != 20000 || s.Products != 2000 || fmt.Sprint(s.Workers) != "[1 3]" || s.BatchBytes != 2<<20 {
		t.Errorf("quick settings = %+v", s)
	}
	if s, err := parseSettings([]string{"-batch-mib", "32"}); err != nil || s.BatchBytes != 32<<20 {
		t.Errorf("-batch-mib 32: %+v, %v", s.BatchBytes, err)
	}
	for _, args := range [][]string{
		{"-events", "10", "-products", "20"},
		{"-products", "0"},
		{"-batch", "0"},
		{"-batch-mib", "0"},
		{"-batch-mib", "2048"},
		{"-batch-mib", "2M"},
		{"-workers", "1,x"},
		{"-workers", "0"},
		{"-workers", ""},
		{"extra"},
	} {
		var ue cli.UsageError
		if _, err := parseSettings(args); !errors.As(err, &ue) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}

// The per-batch fold keeps the last document of each product in each
// batch, in the batch's order, and nothing across batches.
func TestFoldPerBatch(t *testing.T) {
	var ops []esindex.Op
	for i, id := range strings.Split("a b a c b a", " ") {
		ops = append(ops, esindex.Op{ID: id, Version: int64(i + 1)})
	}
	sizes := []int{10, 10, 10, 10, 10, 10}
	got := foldPerBatch(ops, sizes, 3, 1000) // [a b a] [c b a]
	var s []string
	for _, op := range got {
		s = append(s, fmt.Sprintf("%s%d", op.ID, op.Version))
	}
	if strings.Join(s, " ") != "b2 a3 c4 b5 a6" {
		t.Errorf("folded = %v", s)
	}
	if n := len(foldPerBatch(ops, sizes, 100, 1000)); n != 3 {
		t.Errorf("one batch: %d documents, want 3", n)
	}
	// By bytes: a batch closes once it reaches 25 bytes, so [a b a] [c b a]
	// again with records of 10 bytes.
	if got := foldPerBatch(ops, sizes, 100, 25); len(got) != 5 {
		t.Errorf("batches of 25 bytes: %d documents, want 5", len(got))
	}
	// One record over the bound is a batch of its own.
	if got := foldPerBatch(ops, []int{100, 100, 100, 100, 100, 100}, 100, 50); len(got) != 6 {
		t.Errorf("records over the bound: %d documents, want 6 (nothing folds)", len(got))
	}
}

func TestResultMarksTheBestRun(t *testing.T) {
	m := measurement{Events: 1000, Runs: []run{{1, 2, 500}, {2, 1, 1000}},
		Raw: rawLoads{FinalDocs: 10, Final: 1.25, PerEventDocs: 1000, PerEvent: 2, FoldedDocs: 500, Folded: 1}}
	res := m.result(settings{Events: 1000, Products: 10}, time.Now())
	if len(res.Rows) != 4 || res.Rows[0].Pass != nil || res.Rows[1].Pass == nil || !*res.Rows[1].Pass {
		t.Fatalf("rows = %+v, want the target on the 2-worker run only", res.Rows)
	}
	if r := res.Rows[1]; r.Ratio != 1.25 || r.BaselineValue != 800 {
		t.Errorf("best row = %+v, want ratio 1000/800", r)
	}
	if len(res.Series) != 2 || len(res.Series[0].Points) != 2 {
		t.Errorf("series = %+v", res.Series)
	}
	t.Setenv(result.DirEnv, t.TempDir())
	if _, err := result.Save(res); err != nil {
		t.Errorf("the result does not save: %v", err)
	}
}
