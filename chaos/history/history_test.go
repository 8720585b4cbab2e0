package history

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// What the Writer writes, Read reads back, from many goroutines at once.
func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.UTC)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.Add(Attempt{Record: "attempt", Op: int64(i), N: 1, Type: UpdateProduct, Body: []byte(`{"name":"x"}`), Start: t0, Status: 200,
				Resp: []byte(`{"id":"p","version":2}`)})
		}()
	}
	w.Add(Fault{Record: "fault", Seq: 1, Kind: "kill", Target: "api", Hold: time.Second, Start: t0, Verified: []string{"gone"}})
	over := Fault{Record: "fault", Seq: 2, Kind: KindOversize, Target: "order", Param: "bytes=1600000", Start: t0, Keys: []string{"oversize-r-2"},
		Appended: []Appended{{AggregateType: "order", AggregateID: "oversize-r-2", Version: 1, EventID: "e1", OutboxID: 7, Shard: 63, PayloadBytes: 1600090},
			{AggregateType: "order", AggregateID: "oversize-r-2", Version: 2, EventID: "e2", OutboxID: 8, Shard: 63, PayloadBytes: 40}}}
	w.Add(over)
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	as, fs, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 50 || len(fs) != 2 {
		t.Fatalf("%d attempts, %d faults", len(as), len(fs))
	}
	if ack, ok := as[0].Ack(); !ok || ack.Version != 2 || !as[0].Start.Equal(t0) || string(as[0].Body) != `{"name":"x"}` {
		t.Fatalf("attempt %+v ack %+v", as[0], ack)
	}
	if fs[0].Hold != time.Second || fs[0].Verified[0] != "gone" {
		t.Fatalf("fault %+v", fs[0])
	}
	if !reflect.DeepEqual(fs[1].Appended, over.Appended) || !reflect.DeepEqual(fs[1].Keys, over.Keys) {
		t.Fatalf("oversize fault read back as %+v", fs[1])
	}
	if _, _, err := Read(strings.NewReader(`{"record":"meteor"}`)); err == nil {
		t.Fatal("unknown record read without error")
	}
}

func TestAckAndDefinite(t *testing.T) {
	for _, tc := range []struct {
		a        Attempt
		ack, def bool
	}{
		{Attempt{Status: 201, Resp: []byte(`{"id":"x","version":1}`)}, true, true},
		{Attempt{Status: 201, Resp: []byte(`{"id":"x"`)}, false, true}, // body cut off
		{Attempt{Status: 200, Type: ReadProduct, Resp: []byte(`{"id":"x","version":1}`)}, false, true},
		{Attempt{Status: 409}, false, true},
		{Attempt{Status: 503}, false, false},
		{Attempt{Err: "timeout"}, false, false},
	} {
		if _, ok := tc.a.Ack(); ok != tc.ack || tc.a.Definite() != tc.def {
			t.Errorf("%+v: ack %v definite %v", tc.a, ok, tc.a.Definite())
		}
	}
}
