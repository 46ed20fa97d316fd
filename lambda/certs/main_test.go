package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/cfn"

	"github.com/pgha/pgha/certs"
	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/certevent"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct {
		name, fixture, raw string
		want               string // "Create", "Update", "Delete", "renew", or "" for refused
	}{
		{name: "custom resource create", fixture: "create.json", want: "Create"},
		{name: "custom resource update", fixture: "update.json", want: "Update"},
		{name: "custom resource delete", fixture: "delete.json", want: "Delete"},
		{name: "schedule input", fixture: "renew.json", want: "renew"},
		{name: "rejects EventBridge's own scheduled event", fixture: "scheduled-event.json"},
		{name: "rejects a non-object", raw: `["renew"]`},
		{name: "rejects an empty object", raw: `{}`},
		{name: "rejects both shapes at once", raw: `{"RequestType":"Create","ResponseURL":"https://x","StackId":"s","action":"renew","config":{}}`},
		{name: "rejects an unknown request type", raw: `{"RequestType":"Replace","ResponseURL":"https://x","StackId":"s"}`},
		{name: "rejects a request without a response URL", raw: `{"RequestType":"Create","ResponseURL":"","StackId":"s"}`},
		{name: "rejects keys in another case", raw: `{"requesttype":"Create","responseurl":"https://x","stackid":"s"}`},
		{name: "rejects an unknown action", raw: `{"action":"rotate","config":{}}`},
		{name: "rejects a renew without config", raw: `{"action":"renew"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			if tc.fixture != "" {
				raw = fixture(t, tc.fixture)
			}
			ev, err := parseEvent(raw)
			var got string
			switch {
			case err != nil:
			case ev.custom != nil && ev.renew == nil:
				got = string(ev.custom.RequestType)
			case ev.renew != nil && ev.custom == nil:
				got = ev.renew.Action
			default:
				t.Fatalf("event %+v: want exactly one shape", ev)
			}
			if got != tc.want {
				t.Errorf("parsed as %q (error %v), want %q", got, err, tc.want)
			}
			if tc.want == "" && err == nil {
				t.Error("no error")
			}
		})
	}
}

// ensureCall is one call of the fake ensure.
type ensureCall struct {
	cluster string
	nodes   int
	rotate  bool
}

// recorder stands in for certs.Ensure (which is tested against the moto
// emulator in package certs) and catches what CloudFormation would get.
type recorder struct {
	mu        sync.Mutex
	calls     []ensureCall
	err       error
	responses []cfn.Response
	srv       *httptest.Server
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var resp cfn.Response
		b, _ := io.ReadAll(req.Body)
		if req.Method != http.MethodPut || json.Unmarshal(b, &resp) != nil {
			http.Error(w, "want a PUT of a JSON response", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.responses = append(r.responses, resp)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) ensure(_ context.Context, p *cluster.Plan, opts certs.Options) (certs.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, ensureCall{cluster: p.Config.Name, nodes: len(p.Nodes), rotate: opts.Rotate})
	return certs.Result{Issued: []string{"euw3-pg1"}}, r.err
}

// event reads a fixture and points its ResponseURL at the recorder.
func (r *recorder) event(t *testing.T, name string) json.RawMessage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(fixture(t, name), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["ResponseURL"]; ok {
		m["ResponseURL"] = r.srv.URL + "/response"
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandle(t *testing.T) {
	defaultNodes := 0
	if p, err := cluster.NewPlan(cluster.Default()); err == nil {
		defaultNodes = len(p.Nodes)
	}
	for _, tc := range []struct {
		name, fixture string
		cluster       string // the issuer's; default "pgha"
		ensureErr     error
		wantCalls     []ensureCall
		wantStatus    cfn.StatusType // "" when no answer is due
		wantID        string
		wantReason    string
		wantErr       bool
	}{
		{name: "create: issue, no rotation", fixture: "create.json",
			wantCalls: []ensureCall{{"pgha", defaultNodes, false}}, wantStatus: cfn.StatusSuccess, wantID: "pgha-tls"},
		{name: "update with the same rotation: renew only", fixture: "update.json",
			wantCalls: []ensureCall{{"pgha", defaultNodes, false}}, wantStatus: cfn.StatusSuccess, wantID: "pgha-tls"},
		{name: "update with a new rotation: rotate", fixture: "update-rotation.json",
			wantCalls: []ensureCall{{"pgha", defaultNodes, true}}, wantStatus: cfn.StatusSuccess, wantID: "pgha-tls"},
		{name: "delete: keep the secrets", fixture: "delete.json",
			wantStatus: cfn.StatusSuccess, wantID: "pgha-tls"},
		{name: "create that fails: FAILED with the reason", fixture: "create.json", ensureErr: errors.New("AccessDeniedException"),
			wantCalls: []ensureCall{{"pgha", defaultNodes, false}}, wantStatus: cfn.StatusFailed, wantID: "pgha-tls", wantReason: "AccessDeniedException"},
		{name: "create for another cluster: FAILED, nothing written", fixture: "create.json", cluster: "other",
			wantStatus: cfn.StatusFailed, wantReason: `cluster "pgha"'s; this issuer serves "other"`},
		{name: "schedule: renew", fixture: "renew.json",
			wantCalls: []ensureCall{{"pgha", defaultNodes, false}}},
		{name: "schedule that fails: the invocation fails", fixture: "renew.json", ensureErr: errors.New("ThrottlingException"),
			wantCalls: []ensureCall{{"pgha", defaultNodes, false}}, wantErr: true},
		{name: "schedule for another cluster: fails, nothing written", fixture: "renew.json", cluster: "other", wantErr: true},
		{name: "EventBridge's own event: fails", fixture: "scheduled-event.json", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t)
			rec.err = tc.ensureErr
			name := tc.cluster
			if name == "" {
				name = "pgha"
			}
			var logs bytes.Buffer
			h := newHandler(name, rec.ensure, slog.New(slog.NewJSONHandler(&logs, nil)))
			err := h.Handle(context.Background(), rec.event(t, tc.fixture))
			if (err != nil) != tc.wantErr {
				t.Errorf("Handle: %v, want error %v", err, tc.wantErr)
			}
			if len(rec.calls) != len(tc.wantCalls) || len(rec.calls) > 0 && rec.calls[0] != tc.wantCalls[0] {
				t.Errorf("ensure calls %+v, want %+v", rec.calls, tc.wantCalls)
			}
			if tc.wantStatus == "" {
				if len(rec.responses) != 0 {
					t.Errorf("answered CloudFormation %+v, want no answer", rec.responses)
				}
				return
			}
			if len(rec.responses) != 1 {
				t.Fatalf("%d answers to CloudFormation, want 1", len(rec.responses))
			}
			resp := rec.responses[0]
			if resp.Status != tc.wantStatus || tc.wantID != "" && resp.PhysicalResourceID != tc.wantID || !strings.Contains(resp.Reason, tc.wantReason) {
				t.Errorf("answer %+v, want status %s, physical ID %q, reason with %q", resp, tc.wantStatus, tc.wantID, tc.wantReason)
			}
			if resp.PhysicalResourceID == "" || resp.RequestID == "" || resp.StackID == "" || resp.LogicalResourceID == "" {
				t.Errorf("answer %+v lacks the request's identifiers", resp)
			}
		})
	}
}

// TestFixturesAreTheDefault: the fixtures carry the default cluster's
// configuration (tuned and rotated in the updates), in the shape
// certevent writes; constructs/tls's test checks the template passes the
// same.
func TestFixturesAreTheDefault(t *testing.T) {
	want, err := certevent.Config(cluster.Default())
	if err != nil {
		t.Fatal(err)
	}
	var renew certevent.Renew
	if err := json.Unmarshal(fixture(t, "renew.json"), &renew); err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, renew.Config); err != nil || compact.String() != string(want) {
		t.Errorf("renew.json's config is not the default's (%v)", err)
	}
	var create cfn.Event
	if err := json.Unmarshal(fixture(t, "create.json"), &create); err != nil {
		t.Fatal(err)
	}
	if create.ResourceProperties[certevent.PropConfig] != string(want) || create.ResourceProperties[certevent.PropRotation] != "0" ||
		create.ResourceType != certevent.ResourceType {
		t.Errorf("create.json's properties are not the default's: %v", create.ResourceProperties)
	}
}

func TestRunNeedsTheCluster(t *testing.T) {
	err := run(context.Background(), func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), certevent.EnvCluster) {
		t.Errorf("run without %s: %v", certevent.EnvCluster, err)
	}
}
