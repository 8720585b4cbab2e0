package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

type createBody struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Price       float64 `json:"price"`
	Stock       int     `json:"stock"`
}

// create sends one POST /v1/products; kind is "" on a 201, else a short
// error class for the report ("http 429", "timeout", …).
func (pl *pipeline) create(ctx context.Context, i int) (id string, version int64, kind string) {
	body, _ := json.Marshal(createBody{
		Name:        fmt.Sprintf("bench lamp %d", i),
		Description: fmt.Sprintf("benchmark product %d of run %s, a small desk lamp with a warm light", i, pl.runID),
		Price:       float64(100+i%9000) / 100,
		Stock:       i % 500,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+pl.api.Addr+"/v1/products", bytes.NewReader(body))
	if err != nil {
		return "", 0, "request"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+pl.apiKey)
	res, err := pl.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
			return "", 0, "timeout"
		}
		return "", 0, "transport"
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode != http.StatusCreated {
		return "", 0, "http " + strconv.Itoa(res.StatusCode)
	}
	var out struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.ID == "" || out.Version < 1 {
		return "", 0, "bad 201 body"
	}
	return out.ID, out.Version, ""
}
