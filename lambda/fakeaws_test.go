package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// fakeAWS speaks the JSON 1.1 protocol of SSM (SendCommand, GetParameter,
// PutParameter) and Secrets Manager (GetSecretValue) on 127.0.0.1, keeps
// parameters, and records every call it got.
type fakeAWS struct {
	srv *httptest.Server

	mu      sync.Mutex
	calls   []fakeCall
	params  map[string]string
	secrets map[string]string
}

type fakeCall struct {
	Target string // e.g. "AmazonSSM.SendCommand"
	Body   map[string]any
	Auth   string
}

func newFakeAWS(t *testing.T) *fakeAWS {
	f := &fakeAWS{params: map[string]string{}, secrets: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAWS) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
		f.fail(w, 400, "SerializationException", "want a JSON 1.1 POST, got "+r.Method+" "+r.Header.Get("Content-Type"))
		return
	}
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		f.fail(w, 400, "SerializationException", err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fakeCall{Target: target, Body: body, Auth: r.Header.Get("Authorization")})
	name, _ := body["Name"].(string)
	switch target {
	case "AmazonSSM.SendCommand":
		ids, _ := body["InstanceIds"].([]any)
		f.ok(w, map[string]any{"Command": map[string]any{
			"CommandId": "11111111-2222-3333-4444-555555555555", "DocumentName": body["DocumentName"],
			"InstanceIds": ids, "Status": "Pending",
		}})
	case "AmazonSSM.GetParameter":
		v, ok := f.params[name]
		if !ok {
			f.fail(w, 400, "ParameterNotFound", "Parameter "+name+" not found.")
			return
		}
		f.ok(w, map[string]any{"Parameter": map[string]any{"Name": name, "Value": v, "Type": "String", "Version": 1}})
	case "AmazonSSM.GetParametersByPath":
		path, _ := body["Path"].(string)
		var ps []any
		for k, v := range f.params {
			if strings.HasPrefix(k, path+"/") && !strings.Contains(k[len(path)+1:], "/") {
				ps = append(ps, map[string]any{"Name": k, "Value": v, "Type": "String"})
			}
		}
		f.ok(w, map[string]any{"Parameters": ps})
	case "AmazonSSM.PutParameter":
		f.params[name] = body["Value"].(string)
		f.ok(w, map[string]any{"Version": 1, "Tier": "Standard"})
	case "secretsmanager.GetSecretValue":
		id, _ := body["SecretId"].(string)
		v, ok := f.secrets[id]
		if !ok {
			f.fail(w, 400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
			return
		}
		f.ok(w, map[string]any{"ARN": "arn:aws:secretsmanager:eu-west-3:111122223333:secret:" + id + "-AbCdEf", "Name": id, "SecretString": v, "VersionId": "v1"})
	default:
		f.fail(w, 400, "UnknownOperationException", target)
	}
}

func (f *fakeAWS) ok(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(v)
}

func (f *fakeAWS) fail(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}

// callsTo returns the recorded calls of one operation.
func (f *fakeAWS) callsTo(target string) []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeCall
	for _, c := range f.calls {
		if c.Target == target {
			out = append(out, c)
		}
	}
	return out
}

// ssmClient and secretsClient are the real SDK clients pointed at the fake,
// with static fake credentials.
func (f *fakeAWS) ssmClient() *ssm.Client {
	return ssm.New(ssm.Options{
		Region:           "eu-west-3",
		BaseEndpoint:     aws.String(f.srv.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "fake-secret", ""),
		RetryMaxAttempts: 1,
	})
}

func (f *fakeAWS) secretsClient() *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:           "eu-west-3",
		BaseEndpoint:     aws.String(f.srv.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "fake-secret", ""),
		RetryMaxAttempts: 1,
	})
}

func signedBy(c fakeCall, key string) bool {
	return strings.HasPrefix(c.Auth, "AWS4-HMAC-SHA256 Credential="+key+"/")
}
