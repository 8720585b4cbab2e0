package write

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"time"

	"cqrsflow/bench/loadgen"
)

// waitAPI waits until the api accepts a write (its /readyz also checks
// Elasticsearch, which this part does not need).
func (b *bench) waitAPI(ctx context.Context, a *apiProc, timeout time.Duration) error {
	return a.proc.Until(ctx, timeout, "the api to accept a write", func() (bool, error) {
		if err := b.create(ctx, a); err != nil {
			return false, err
		}
		return true, nil
	})
}

func productBody(i int) string {
	return fmt.Sprintf(`{"name":"bench product %d","description":"a product created by the write benchmark","price":%d.%02d,"stock":%d}`,
		i, i%1000, i%100, i%50)
}

func (b *bench) do(ctx context.Context, a *apiProc, method, path, body string, want int) error {
	req, err := http.NewRequestWithContext(ctx, method, a.baseURL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+b.key)
	res, err := b.client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, msg)
	}
	return nil
}

func (b *bench) create(ctx context.Context, a *apiProc) error {
	return b.do(ctx, a, "POST", "/v1/products", productBody(mrand.IntN(1_000_000)), http.StatusCreated)
}

// apiOp is one command over HTTP to a: an update of a random seeded
// product (no expected version, so no conflicts) or a create.
func (b *bench) apiOp(a *apiProc) loadgen.Op {
	return func(ctx context.Context, _ int) error {
		if mrand.Float64() < b.s.UpdateShare {
			return b.do(ctx, a, "PUT", "/v1/products/"+b.ids[mrand.IntN(len(b.ids))], productBody(mrand.IntN(1_000_000)), http.StatusOK)
		}
		return b.create(ctx, a)
	}
}

// rawOp is the same command straight on the store, one transaction per
// command (raw.go).
func (b *bench) rawOp(ctx context.Context, _ int) error {
	return b.raw.command(ctx, b.raw.store, b.ids, b.s.UpdateShare)
}

// rawBatchedOp is the same command through the store's group commit,
// in-process: the ceiling of the api with group commit.
func (b *bench) rawBatchedOp(ctx context.Context, _ int) error {
	return b.raw.command(ctx, b.raw.batcher, b.ids, b.s.UpdateShare)
}
