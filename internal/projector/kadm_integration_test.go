//go:build integration

package projector_test

import (
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func kadmClient(cl *kgo.Client) *kadm.Client { return kadm.NewClient(cl) }

type tw struct{ t interface{ Log(...any) } }

func (w tw) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func testWriter(t interface{ Log(...any) }) tw { return tw{t} }
