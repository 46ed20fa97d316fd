package healthcheck

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// AppProber asks app instances GET /readyz.
type AppProber struct {
	// HTTP is the client. Default: one without keep-alives.
	HTTP *http.Client
	// Timeout bounds each app's request. Default: DefaultAppTimeout.
	Timeout time.Duration
}

// ProbeAll asks every app at once; the statuses are in the order of apps.
func (p *AppProber) ProbeAll(ctx context.Context, apps []App) []AppStatus {
	out := make([]AppStatus, len(apps))
	var wg sync.WaitGroup
	for i, a := range apps {
		wg.Go(func() { out[i] = p.Probe(ctx, a) })
	}
	wg.Wait()
	return out
}

// Probe asks one app GET /readyz: ready when it answers 200.
func (p *AppProber) Probe(ctx context.Context, a App) AppStatus {
	timeout, client := DefaultAppTimeout, defaultHTTP
	if p != nil && p.Timeout > 0 {
		timeout = p.Timeout
	}
	if p != nil && p.HTTP != nil {
		client = p.HTTP
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st := AppStatus{App: a}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+"/readyz", nil)
	if err != nil {
		st.Detail = err.Error()
		return st
	}
	resp, err := client.Do(req)
	if err != nil {
		st.Detail = err.Error()
		return st
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	st.Ready = resp.StatusCode == http.StatusOK
	if !st.Ready {
		st.Detail = fmt.Sprintf("GET /readyz: %s", resp.Status)
	}
	return st
}
