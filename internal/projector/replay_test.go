package projector

import (
	"errors"
	"testing"
)

func TestParseOffsets(t *testing.T) {
	got, err := ParseOffsets("a.b.events:0=5, a.b.events:2=7")
	if err != nil || got["a.b.events"][0] != 5 || got["a.b.events"][2] != 7 {
		t.Fatalf("got %v %v", got, err)
	}
	for _, bad := range []string{"", "x", "t:0", "t:x=1", "t:0=-1", ":0=1"} {
		if _, err := ParseOffsets(bad); !errors.Is(err, ErrInvalidReplay) {
			t.Errorf("%q: err %v, want ErrInvalidReplay", bad, err)
		}
	}
}
