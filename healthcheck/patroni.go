package healthcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"sync"
	"time"

	"github.com/pgha/pgha/internal/jsonget"
	"github.com/pgha/pgha/internal/patroni"
)

// Probe is what one member answered.
type Probe struct {
	Member  Member
	Patroni *patroni.Status  // nil when GET /patroni failed
	Cluster *patroni.Cluster // nil when GET /cluster failed
	Err     error            // the first failure, nil when both answered
	Took    time.Duration
}

// Answered reports whether the member's REST API answered GET /patroni.
func (p Probe) Answered() bool { return p.Patroni != nil }

// PatroniClient reads Patroni's REST API.
type PatroniClient struct {
	// HTTP is the client used; its own Timeout should be zero or larger
	// than Timeout. Default: a client without keep-alives, so that a
	// half-dead node cannot hold a pooled connection across runs.
	HTTP *http.Client
	// Timeout bounds both requests to one member. Default: DefaultNodeTimeout.
	Timeout time.Duration
	// User and Password authenticate the unsafe requests (PATCH, POST).
	// Default: none.
	User, Password string
}

// NewPatroniClient is a PatroniClient that verifies the members against
// roots (the cluster CA) and authenticates its unsafe requests as user.
// Like the default client it does not pool connections.
func NewPatroniClient(roots *x509.CertPool, user, password string, timeout time.Duration) *PatroniClient {
	return &PatroniClient{
		HTTP: &http.Client{Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		}},
		Timeout: timeout, User: user, Password: password,
	}
}

func (c *PatroniClient) client() *http.Client {
	if c != nil && c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

func (c *PatroniClient) timeout() time.Duration {
	if c != nil && c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultNodeTimeout
}

// defaultHTTP does not pool connections: every check dials afresh.
var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:             nil,
	DisableKeepAlives: true,
}}

// Probe asks one member GET /patroni and GET /cluster concurrently, both
// bounded by the client's Timeout.
func (c *PatroniClient) Probe(ctx context.Context, m Member) Probe {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	p := Probe{Member: m}
	var perr, cerr error
	var wg sync.WaitGroup
	wg.Go(func() {
		var st patroni.Status
		if _, perr = jsonget.Any(ctx, c.client(), m.URL+"/patroni", &st); perr == nil {
			p.Patroni = &st
		}
	})
	wg.Go(func() {
		var cs patroni.Cluster
		if _, cerr = jsonget.Any(ctx, c.client(), m.URL+"/cluster", &cs); cerr == nil {
			p.Cluster = &cs
		}
	})
	wg.Wait()
	p.Took = time.Since(start)
	if perr != nil {
		p.Err = perr
	} else {
		p.Err = cerr
	}
	return p
}

// ProbeAll asks every member at once and returns the probes in the order of
// members. It takes as long as the slowest member, never more than the
// client's Timeout (plus scheduling), whatever the number of members.
func (c *PatroniClient) ProbeAll(ctx context.Context, members []Member) []Probe {
	out := make([]Probe, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() { out[i] = c.Probe(ctx, m) })
	}
	wg.Wait()
	return out
}
