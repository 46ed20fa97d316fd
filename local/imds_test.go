package local

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// imdsPG1 has user data with bytes a text answer would mangle: NUL, invalid
// UTF-8, CRLF and a trailing newline.
var imdsPG1 = IMDSNode{
	Name:       "euw3-pg1",
	InstanceID: "i-0pghaeuw3pg1",
	Region:     "eu-west-3",
	Zone:       "eu-west-3a",
	IP:         "10.11.3.10",
	Role:       "pgha-euw3-pg1",
	UserData:   []byte("#!/bin/bash\r\necho \x00\xff\xfe\n"),
}

func newTestIMDS(nodes map[string]IMDSNode, now func() time.Time) *IMDS {
	return &IMDS{
		Nodes:           nodes,
		AccessKeyID:     "ASIALOCALPGHA",
		SecretAccessKey: "local-secret",
		SessionToken:    "local-session",
		Now:             now,
	}
}

// TestIMDSSDK reads the metadata with the AWS SDK's own IMDS client and
// instance-role credential provider, with the fallback to IMDSv1 off.
func TestIMDSSDK(t *testing.T) {
	s := newTestIMDS(map[string]IMDSNode{"127.0.0.1": imdsPG1}, nil)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	client := imds.New(imds.Options{Endpoint: srv.URL, EnableFallback: aws.FalseTernary})
	ctx := t.Context()

	t.Run("user data", func(t *testing.T) {
		out, err := client.GetUserData(ctx, &imds.GetUserDataInput{})
		if err != nil {
			t.Fatal(err)
		}
		defer out.Content.Close()
		got, err := io.ReadAll(out.Content)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(imdsPG1.UserData) {
			t.Errorf("user data = %q, want %q", got, imdsPG1.UserData)
		}
	})

	t.Run("region", func(t *testing.T) {
		out, err := client.GetRegion(ctx, &imds.GetRegionInput{})
		if err != nil {
			t.Fatal(err)
		}
		if out.Region != "eu-west-3" {
			t.Errorf("region = %q, want eu-west-3", out.Region)
		}
	})

	for path, want := range map[string]string{
		"instance-id":                  "i-0pghaeuw3pg1",
		"local-ipv4":                   "10.11.3.10",
		"local-hostname":               "ip-10-11-3-10.eu-west-3.compute.internal",
		"hostname":                     "ip-10-11-3-10.eu-west-3.compute.internal",
		"placement/region":             "eu-west-3",
		"placement/availability-zone":  "eu-west-3a",
		"iam/security-credentials/":    "pgha-euw3-pg1",
		"placement/":                   "availability-zone\nregion",
		"iam/":                         "info\nsecurity-credentials/",
		"/":                            "hostname\niam/\ninstance-id\nlocal-hostname\nlocal-ipv4\nplacement/",
		"iam/security-credentials/xyz": "",
	} {
		t.Run(path, func(t *testing.T) {
			got, err := imdsMetadata(ctx, client, path)
			if want == "" {
				if err == nil {
					t.Errorf("%s = %q, want an error", path, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s = %q, want %q", path, got, want)
			}
		})
	}

	t.Run("IAM info", func(t *testing.T) {
		out, err := client.GetIAMInfo(ctx, &imds.GetIAMInfoInput{})
		if err != nil {
			t.Fatal(err)
		}
		info := out.IAMInfo
		if info.Code != "Success" || info.InstanceProfileArn != "arn:aws:iam::123456789012:instance-profile/pgha-euw3-pg1" ||
			info.InstanceProfileID == "" || time.Since(info.LastUpdated) > time.Minute {
			t.Errorf("IAM info = %+v", info)
		}
	})

	t.Run("identity document", func(t *testing.T) {
		out, err := client.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
		if err != nil {
			t.Fatal(err)
		}
		doc := out.InstanceIdentityDocument
		if doc.AccountID != "123456789012" || doc.InstanceID != "i-0pghaeuw3pg1" || doc.PrivateIP != "10.11.3.10" ||
			doc.AvailabilityZone != "eu-west-3a" || doc.InstanceType == "" || doc.ImageID == "" ||
			(doc.Architecture != "x86_64" && doc.Architecture != "arm64") {
			t.Errorf("identity document = %+v", doc)
		}
	})

	t.Run("role credentials", func(t *testing.T) {
		p := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client })
		creds, err := p.Retrieve(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if creds.AccessKeyID != s.AccessKeyID || creds.SecretAccessKey != s.SecretAccessKey || creds.SessionToken != s.SessionToken {
			t.Errorf("credentials = %+v, want the configured keys", creds)
		}
		// The provider caps the expiry at an hour, to refresh early.
		if left := time.Until(creds.Expires); !creds.CanExpire || left < 50*time.Minute || left > time.Hour {
			t.Errorf("credentials expire in %v, want about 1h", left)
		}
	})

	t.Run("role credentials document", func(t *testing.T) {
		raw, err := imdsMetadata(ctx, client, "iam/security-credentials/pgha-euw3-pg1")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Code, Type  string
			LastUpdated time.Time
			Expiration  time.Time
		}
		if err := json.Unmarshal([]byte(raw), &doc); err != nil {
			t.Fatal(err)
		}
		if left := doc.Expiration.Sub(doc.LastUpdated); doc.Code != "Success" || doc.Type != "AWS-HMAC" || left != 6*time.Hour {
			t.Errorf("credentials document = %s, want Success, AWS-HMAC, expiring 6h after LastUpdated", raw)
		}
	})
}

func imdsMetadata(ctx context.Context, client *imds.Client, path string) (string, error) {
	out, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	return string(b), err
}

// TestIMDSRejects checks the IMDSv2 rules on the handler, requests coming
// from the address they name.
func TestIMDSRejects(t *testing.T) {
	const pg1, pg2, stranger = "10.11.3.10", "10.11.4.10", "10.11.5.10"
	pg2Node := imdsPG1
	pg2Node.IP, pg2Node.UserData = pg2, nil
	type request struct {
		from   string // source address
		method string
		path   string
		header map[string]string
	}
	tests := []struct {
		name string
		// token, if set, is issued to tokenFrom with a TTL of 60 s, then
		// the clock moves by advance, then the request is sent with it.
		tokenFrom string
		advance   time.Duration
		req       request
		want      int
	}{
		{name: "token is valid on its node", tokenFrom: pg1, req: request{from: pg1, method: "GET", path: "/latest/meta-data/instance-id"}, want: 200},
		{name: "token is valid until its TTL", tokenFrom: pg1, advance: 59 * time.Second, req: request{from: pg1, method: "GET", path: "/latest/meta-data/instance-id"}, want: 200},
		{name: "rejects no token", req: request{from: pg1, method: "GET", path: "/latest/meta-data/instance-id"}, want: 401},
		{name: "rejects an unknown token", req: request{from: pg1, method: "GET", path: "/latest/meta-data/instance-id", header: map[string]string{imdsTokenHeader: "AAAA"}}, want: 401},
		{name: "rejects a token of another node", tokenFrom: pg2, req: request{from: pg1, method: "GET", path: "/latest/meta-data/instance-id"}, want: 401},
		{name: "rejects an expired token", tokenFrom: pg1, advance: 60 * time.Second, req: request{from: pg1, method: "GET", path: "/latest/meta-data/instance-id"}, want: 401},
		{name: "rejects a missing TTL", req: request{from: pg1, method: "PUT", path: "/latest/api/token"}, want: 400},
		{name: "rejects a TTL of 0", req: request{from: pg1, method: "PUT", path: "/latest/api/token", header: map[string]string{imdsTTLHeader: "0"}}, want: 400},
		{name: "rejects a TTL over six hours", req: request{from: pg1, method: "PUT", path: "/latest/api/token", header: map[string]string{imdsTTLHeader: "21601"}}, want: 400},
		{name: "rejects a TTL not a number", req: request{from: pg1, method: "PUT", path: "/latest/api/token", header: map[string]string{imdsTTLHeader: "6h"}}, want: 400},
		{name: "accepts a TTL of six hours", req: request{from: pg1, method: "PUT", path: "/latest/api/token", header: map[string]string{imdsTTLHeader: "21600"}}, want: 200},
		{name: "rejects a forwarded PUT", req: request{from: pg1, method: "PUT", path: "/latest/api/token", header: map[string]string{imdsTTLHeader: "60", "X-Forwarded-For": "10.0.0.1"}}, want: 403},
		{name: "rejects an unknown source", req: request{from: stranger, method: "PUT", path: "/latest/api/token", header: map[string]string{imdsTTLHeader: "60"}}, want: 404},
		{name: "ignores a forwarded address", tokenFrom: pg1, req: request{from: stranger, method: "GET", path: "/latest/meta-data/instance-id", header: map[string]string{"X-Forwarded-For": pg1}}, want: 404},
		{name: "rejects an unknown path", tokenFrom: pg1, req: request{from: pg1, method: "GET", path: "/latest/meta-data/no-such-thing"}, want: 404},
		{name: "rejects an unknown role", tokenFrom: pg1, req: request{from: pg1, method: "GET", path: "/latest/meta-data/iam/security-credentials/admin"}, want: 404},
		{name: "rejects empty user data", tokenFrom: pg2, req: request{from: pg2, method: "GET", path: "/latest/user-data"}, want: 404},
		{name: "rejects an unknown version", tokenFrom: pg1, req: request{from: pg1, method: "GET", path: "/2009-04-04/meta-data/instance-id"}, want: 404},
		{name: "rejects POST", tokenFrom: pg1, req: request{from: pg1, method: "POST", path: "/latest/meta-data/instance-id"}, want: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
			s := newTestIMDS(map[string]IMDSNode{pg1: imdsPG1, pg2: pg2Node}, func() time.Time { return now })
			h := s.Handler()
			header := map[string]string{}
			if tt.tokenFrom != "" {
				header[imdsTokenHeader] = imdsIssue(t, h, tt.tokenFrom, 60)
				now = now.Add(tt.advance)
			}
			for k, v := range tt.req.header {
				header[k] = v
			}
			w := imdsServe(h, tt.req.from, tt.req.method, tt.req.path, header)
			if w.Code != tt.want {
				t.Errorf("%s %s from %s = %d %q, want %d", tt.req.method, tt.req.path, tt.req.from, w.Code, w.Body, tt.want)
			}
		})
	}
}

// TestIMDSToken checks the token answer: a random token, the TTL echoed
// back (the SDK reads it), and user data as raw bytes.
func TestIMDSToken(t *testing.T) {
	h := newTestIMDS(map[string]IMDSNode{imdsPG1.IP: imdsPG1}, nil).Handler()
	w := imdsServe(h, imdsPG1.IP, "PUT", "/latest/api/token", map[string]string{imdsTTLHeader: "300"})
	if w.Code != 200 || w.Header().Get(imdsTTLHeader) != "300" || len(w.Body.String()) < 20 {
		t.Fatalf("token answer = %d %v %q", w.Code, w.Header(), w.Body)
	}
	if other := imdsIssue(t, h, imdsPG1.IP, 300); other == w.Body.String() {
		t.Errorf("two tokens are both %q", other)
	}
	w = imdsServe(h, imdsPG1.IP, "GET", "/latest/user-data", map[string]string{imdsTokenHeader: w.Body.String()})
	if ct := w.Header().Get("Content-Type"); w.Code != 200 || ct != "application/octet-stream" || w.Body.String() != string(imdsPG1.UserData) {
		t.Errorf("user data = %d %s %q", w.Code, ct, w.Body)
	}
}

// TestIMDSConcurrent issues and uses tokens from many goroutines; run with
// -race to check the token store.
func TestIMDSConcurrent(t *testing.T) {
	nodes := map[string]IMDSNode{}
	for i := range 8 {
		n := imdsPG1
		n.IP, n.InstanceID = fmt.Sprintf("10.11.3.%d", 10+i), fmt.Sprintf("i-%d", i)
		nodes[n.IP] = n
	}
	h := newTestIMDS(nodes, nil).Handler()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			for range 50 {
				w := imdsServe(h, n.IP, "PUT", "/latest/api/token", map[string]string{imdsTTLHeader: "60"})
				w = imdsServe(h, n.IP, "GET", "/latest/meta-data/instance-id", map[string]string{imdsTokenHeader: w.Body.String()})
				if w.Code != 200 || w.Body.String() != n.InstanceID {
					t.Errorf("%s: instance-id = %d %q, want %s", n.IP, w.Code, w.Body, n.InstanceID)
					return
				}
			}
		})
	}
	wg.Wait()
}

func imdsIssue(t *testing.T, h http.Handler, from string, ttl int) string {
	t.Helper()
	w := imdsServe(h, from, "PUT", "/latest/api/token", map[string]string{imdsTTLHeader: fmt.Sprint(ttl)})
	if w.Code != 200 {
		t.Fatalf("token for %s = %d %q", from, w.Code, w.Body)
	}
	return strings.TrimSpace(w.Body.String())
}

func imdsServe(h http.Handler, from, method, path string, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://169.254.169.254"+path, nil)
	r.RemoteAddr = from + ":43210"
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}
