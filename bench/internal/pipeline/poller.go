package pipeline

// The "searchable" probe of the pipeline part: a poller that asks
// Elasticsearch, through the read alias and the _search API (not GET, which
// is realtime), which of the sampled writes are visible at their version.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// visSample is one sampled write followed until it is searchable.
type visSample struct {
	ID        string
	Version   int64
	Intended  time.Time // when the open-loop schedule meant to send it
	Committed time.Time // when the API's 201 arrived
	Visible   time.Time // first search response that returned it; zero until then
}

// visPoller polls Elasticsearch for pending samples every Interval, in
// batches of at most Batch ids, with at most Parallel searches at once.
type visPoller struct {
	URL      string // Elasticsearch base URL
	Alias    string
	Interval time.Duration
	Batch    int
	Parallel int
	Client   *http.Client

	mu        sync.Mutex
	pending   map[string]*visSample
	searches  int
	errs      int
	lastErr   error
	searchSum time.Duration // total round-trip time of the searches
	searchMax time.Duration
}

func newVisPoller(url, alias string, interval time.Duration) *visPoller {
	return &visPoller{
		URL: strings.TrimRight(url, "/"), Alias: alias, Interval: interval,
		Batch: 500, Parallel: 2,
		Client:  &http.Client{Timeout: 10 * time.Second},
		pending: map[string]*visSample{},
	}
}

// add starts following s.
func (p *visPoller) add(s *visSample) {
	p.mu.Lock()
	p.pending[s.ID] = s
	p.mu.Unlock()
}

// pendingCount is the number of samples not yet seen.
func (p *visPoller) pendingCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// pollerStats is what the poller did.
type pollerStats struct {
	Searches, Errors int
	LastErr          error
	MeanRTT, MaxRTT  time.Duration // search round trips
}

// stats returns how many searches ran and failed, the last failure and
// the round-trip times (which bound how late a searchable time can be).
func (p *visPoller) stats() pollerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := pollerStats{Searches: p.searches, Errors: p.errs, LastErr: p.lastErr, MaxRTT: p.searchMax}
	if p.searches > 0 {
		st.MeanRTT = p.searchSum / time.Duration(p.searches)
	}
	return st
}

// run polls until ctx ends.
func (p *visPoller) run(ctx context.Context) {
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.pollOnce(ctx)
	}
}

// pollOnce searches for every pending sample once.
func (p *visPoller) pollOnce(ctx context.Context) {
	p.mu.Lock()
	ids := make([]string, 0, len(p.pending))
	for id := range p.pending {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	var g errgroup.Group
	g.SetLimit(max(1, p.Parallel))
	for start := 0; start < len(ids); start += p.Batch {
		chunk := ids[start:min(start+p.Batch, len(ids))]
		g.Go(func() error {
			sent := time.Now()
			found, err := p.search(ctx, chunk)
			seen := time.Now()
			p.mu.Lock()
			defer p.mu.Unlock()
			p.searches++
			rtt := seen.Sub(sent)
			p.searchSum += rtt
			p.searchMax = max(p.searchMax, rtt)
			if err != nil {
				if ctx.Err() == nil {
					p.errs++
					p.lastErr = err
				}
				return nil
			}
			for id, v := range found {
				if s, ok := p.pending[id]; ok && v >= s.Version {
					s.Visible = seen
					delete(p.pending, id)
				}
			}
			return nil
		})
	}
	_ = g.Wait()
}

// search runs one ids query against the alias and returns the version of
// every hit. A missing alias (the projector has not created it yet) is no
// hit, not an error.
func (p *visPoller) search(ctx context.Context, ids []string) (map[string]int64, error) {
	body, err := json.Marshal(map[string]any{
		"size":    len(ids),
		"_source": false,
		"version": true,
		"query":   map[string]any{"ids": map[string]any{"values": ids}},
	})
	if err != nil {
		return nil, err
	}
	url := p.URL + "/" + p.Alias + "/_search?filter_path=hits.hits._id,hits.hits._version"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := p.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("searching %s: %w", p.Alias, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		_, _ = io.Copy(io.Discard, res.Body)
		return nil, nil
	}
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 300))
		return nil, fmt.Errorf("searching %s: %s: %s", p.Alias, res.Status, bytes.TrimSpace(msg))
	}
	return parseHitVersions(res.Body)
}

// parseHitVersions reads {"hits":{"hits":[{"_id":…,"_version":…}]}}; an
// empty result may come back as {} because of filter_path.
func parseHitVersions(r io.Reader) (map[string]int64, error) {
	var body struct {
		Hits struct {
			Hits []struct {
				ID      string `json:"_id"`
				Version int64  `json:"_version"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(r).Decode(&body); err != nil {
		return nil, fmt.Errorf("decoding search response: %w", err)
	}
	out := make(map[string]int64, len(body.Hits.Hits))
	for _, h := range body.Hits.Hits {
		out[h.ID] = h.Version
	}
	return out, nil
}

// allVisible reports whether every sample was seen.
func (p *visPoller) allVisible(samples []*visSample) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range samples {
		if s.Visible.IsZero() {
			return false
		}
	}
	return true
}

// visibleAt is when s was first seen (zero: not yet); Visible is written
// under the poller's lock.
func (p *visPoller) visibleAt(s *visSample) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return s.Visible
}

// forget stops following samples that never became searchable.
func (p *visPoller) forget(samples []*visSample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range samples {
		delete(p.pending, s.ID)
	}
}
