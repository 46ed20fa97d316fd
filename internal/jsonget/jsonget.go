// Package jsonget reads JSON documents over HTTP: Patroni's REST API and
// etcd's, for the local cluster, the drills and the health checker.
package jsonget

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// maxBody bounds what is read of a response: Patroni's largest document,
// /cluster, is a few kilobytes.
const maxBody = 1 << 20

// Get decodes the body of GET url into v, and fails unless the status is
// 200 OK.
func Get(ctx context.Context, c *http.Client, url string, v any) error {
	status, err := Any(ctx, c, url, v)
	if err == nil && status != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, status)
	}
	return err
}

// Any decodes the body of GET url into v whatever the status, and returns
// the status: Patroni answers /patroni with 503 and its document when
// PostgreSQL is not running.
func Any(ctx context.Context, c *http.Client, url string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: read body: %w", url, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: status %d, not JSON: %w", url, resp.StatusCode, err)
	}
	return resp.StatusCode, nil
}
