package drill

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// AppLoad drives the hello API: PUT then GET of one user, over and over.
type AppLoad struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	requests int
	failures []string // the first few, for the report
	failed   int
}

// StartAppLoad starts requests against base (the app's URL), one PUT and
// one GET every interval.
func StartAppLoad(ctx context.Context, base string, interval time.Duration) *AppLoad {
	ctx, cancel := context.WithCancel(ctx)
	l := &AppLoad{cancel: cancel, done: make(chan struct{})}
	// Longer than the app's own retry budget (~5 s), so that its
	// retrying shows as latency, not as a failure here.
	client := &http.Client{Timeout: 15 * time.Second}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			l.record(appRequest(ctx, client, http.MethodPut, base+"/hello/pghadrill", []byte(`{"dateOfBirth":"1990-01-01"}`), http.StatusNoContent))
			l.record(appRequest(ctx, client, http.MethodGet, base+"/hello/pghadrill", nil, http.StatusOK))
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return l
}

func (l *AppLoad) record(err error) {
	if err == context.Canceled {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests++
	if err != nil {
		l.failed++
		if len(l.failures) < 5 {
			l.failures = append(l.failures, err.Error())
		}
	}
}

// Stop ends the load and returns the number of requests, failed requests,
// and the first failures.
func (l *AppLoad) Stop() (requests, failed int, first []string) {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests, l.failed, l.failures
}

func appRequest(ctx context.Context, client *http.Client, method, url string, body []byte, want int) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := client.Do(req)
	if ctx.Err() != nil {
		return context.Canceled
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s at %s: %s: %s", method, url, start.Format("15:04:05.000"), resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
