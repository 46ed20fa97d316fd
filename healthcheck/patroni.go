package healthcheck

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pgha/pgha/internal/jsonget"
)

// PatroniStatus is a node's own view of itself: Patroni's GET /patroni.
// Patroni answers 200 when PostgreSQL runs and 503 otherwise, with the same
// document; both are decoded.
type PatroniStatus struct {
	State    string `json:"state"` // running, starting, stopped, crashed, ...
	Role     string `json:"role"`  // primary ("master" before Patroni 4), replica, standby_leader, uninitialized
	Timeline int64  `json:"timeline"`
	XLog     struct {
		Location         int64 `json:"location"`          // primary
		ReceivedLocation int64 `json:"received_location"` // replica
		ReplayedLocation int64 `json:"replayed_location"` // replica
	} `json:"xlog"`
	// ReplicationState is a replica's WAL receiver state ("streaming",
	// "in archive recovery"), from Patroni 3.0.4.
	ReplicationState string `json:"replication_state"`
	Replication      []struct {
		ApplicationName string `json:"application_name"`
		State           string `json:"state"`
		SyncState       string `json:"sync_state"`
	} `json:"replication"`
	ServerVersion int64 `json:"server_version"`
	Patroni       struct {
		Version string `json:"version"`
		Scope   string `json:"scope"`
		Name    string `json:"name"`
	} `json:"patroni"`
	Pause bool `json:"pause"`
	// PendingRestart is true when a changed setting waits for PostgreSQL
	// to restart.
	PendingRestart bool `json:"pending_restart"`
}

// IsPrimary reports whether the node says it runs the writable primary.
func (s *PatroniStatus) IsPrimary() bool {
	return s != nil && s.State == "running" && (s.Role == "primary" || s.Role == "master")
}

// ClusterStatus is the DCS view of the cluster as one node sees it:
// Patroni's GET /cluster.
type ClusterStatus struct {
	Members []ClusterMember `json:"members"`
	Pause   bool            `json:"pause"`
}

// ClusterMember is one member in GET /cluster.
type ClusterMember struct {
	Name     string `json:"name"`
	Role     string `json:"role"`  // leader, standby_leader, sync_standby, quorum_standby, replica
	State    string `json:"state"` // running for the leader; streaming, running, stopped, ... for the others
	APIURL   string `json:"api_url"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Timeline int64  `json:"timeline"`
	// Lag is the replica's lag behind the leader in bytes; Patroni writes
	// "unknown" when it has no position for the member.
	Lag Lag `json:"lag"`
}

// Lag is a replication lag in bytes, or Unknown.
type Lag struct {
	Bytes   int64
	Unknown bool
}

// UnmarshalJSON accepts a number, "unknown" or null.
func (l *Lag) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) || len(b) == 0 {
		*l = Lag{Unknown: true}
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			*l = Lag{Bytes: n}
			return nil
		}
		*l = Lag{Unknown: true}
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("patroni lag %s: %w", b, err)
	}
	v, err := n.Int64()
	if err != nil {
		f, ferr := n.Float64()
		if ferr != nil {
			return fmt.Errorf("patroni lag %s: %w", b, err)
		}
		v = int64(f)
	}
	*l = Lag{Bytes: v}
	return nil
}

// MarshalJSON writes the lag as Patroni does.
func (l Lag) MarshalJSON() ([]byte, error) {
	if l.Unknown {
		return []byte(`"unknown"`), nil
	}
	return strconv.AppendInt(nil, l.Bytes, 10), nil
}

// Probe is what one member answered.
type Probe struct {
	Member  Member
	Patroni *PatroniStatus // nil when GET /patroni failed
	Cluster *ClusterStatus // nil when GET /cluster failed
	Err     error          // the first failure, nil when both answered
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
		var st PatroniStatus
		if _, perr = jsonget.Any(ctx, c.client(), m.URL+"/patroni", &st); perr == nil {
			p.Patroni = &st
		}
	})
	wg.Go(func() {
		var cs ClusterStatus
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
