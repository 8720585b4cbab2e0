package projector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// ErrGroupActive is returned when offsets cannot be reset because the
// group has live members.
var ErrGroupActive = errors.New("consumer group has live members")

// ErrInvalidReplay is returned for replay options that cannot be used.
var ErrInvalidReplay = errors.New("invalid replay target")

// GroupName is the consumer group of a projection: <prefix>-<projection>,
// with -v<N> for a rebuild into version N.
func GroupName(prefix, projection string, version int) string {
	g := prefix + "-" + projection
	if version > 0 {
		g += "-v" + strconv.Itoa(version)
	}
	return g
}

// ReplayTarget says where to reset a group: earliest, latest, a timestamp,
// or explicit offsets (topic → partition → offset).
type ReplayTarget struct {
	To      string // "earliest", "latest" or an RFC 3339 timestamp; empty with Offsets
	Offsets map[string]map[int32]int64
}

// ParseOffsets parses "topic:partition=offset,topic:partition=offset".
func ParseOffsets(s string) (map[string]map[int32]int64, error) {
	out := map[string]map[int32]int64{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		tpart, off, ok := strings.Cut(item, "=")
		colon := strings.LastIndex(tpart, ":")
		if !ok || colon <= 0 {
			return nil, fmt.Errorf("%w: %q is not topic:partition=offset", ErrInvalidReplay, item)
		}
		p, err := strconv.ParseInt(tpart[colon+1:], 10, 32)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("%w: partition in %q", ErrInvalidReplay, item)
		}
		o, err := strconv.ParseInt(off, 10, 64)
		if err != nil || o < 0 {
			return nil, fmt.Errorf("%w: offset in %q", ErrInvalidReplay, item)
		}
		topic := tpart[:colon]
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][int32(p)] = o
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no offsets given", ErrInvalidReplay)
	}
	return out, nil
}

// WaitGroupEmpty returns nil once group has no live members, polling up to
// wait (0: check once). ErrGroupActive otherwise.
func WaitGroupEmpty(ctx context.Context, adm *kadm.Client, group string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		dg, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return fmt.Errorf("describing group %s: %w", group, err)
		}
		d := dg[group]
		if d.Err != nil {
			return fmt.Errorf("describing group %s: %w", group, d.Err)
		}
		if len(d.Members) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s has %d member(s) in state %s; stop the projectors of this group or pass --wait", ErrGroupActive, group, len(d.Members), d.State)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Replay resets group's committed offsets on topic to target. It refuses
// while the group has live members (after waiting up to wait for it to
// empty). It returns the offsets committed.
func Replay(ctx context.Context, adm *kadm.Client, group, topic string, target ReplayTarget, wait time.Duration) (kadm.Offsets, error) {
	var listed kadm.ListedOffsets
	var err error
	switch {
	case target.Offsets != nil:
	case target.To == "earliest":
		listed, err = adm.ListStartOffsets(ctx, topic)
	case target.To == "latest":
		listed, err = adm.ListEndOffsets(ctx, topic)
	default:
		ts, perr := time.Parse(time.RFC3339Nano, target.To)
		if perr != nil {
			return nil, fmt.Errorf("%w: --to %q is not earliest, latest or an RFC 3339 timestamp", ErrInvalidReplay, target.To)
		}
		listed, err = adm.ListOffsetsAfterMilli(ctx, ts.UnixMilli(), topic)
	}
	if err == nil && listed != nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	offs := kadm.Offsets{}
	if target.Offsets != nil {
		for t, ps := range target.Offsets {
			for p, o := range ps {
				offs.Add(kadm.Offset{Topic: t, Partition: p, At: o, LeaderEpoch: -1})
			}
		}
	} else {
		listed.Each(func(l kadm.ListedOffset) {
			offs.Add(kadm.Offset{Topic: l.Topic, Partition: l.Partition, At: l.Offset, LeaderEpoch: -1})
		})
	}
	if err := WaitGroupEmpty(ctx, adm, group, wait); err != nil {
		return nil, err
	}
	if err := adm.CommitAllOffsets(ctx, group, offs); err != nil {
		return nil, fmt.Errorf("committing offsets of %s: %w", group, err)
	}
	return offs, nil
}
