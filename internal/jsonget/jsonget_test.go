package jsonget

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte(`{"state": "running"}`))
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"state": "stopped"}`))
		default:
			w.Write([]byte(`<html>`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	var v struct{ State string }

	if err := Get(ctx, srv.Client(), srv.URL+"/ok", &v); err != nil || v.State != "running" {
		t.Errorf("Get /ok = %+v, %v", v, err)
	}
	if err := Get(ctx, srv.Client(), srv.URL+"/down", &v); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Get /down = %v, want a status error", err)
	}
	status, err := Any(ctx, srv.Client(), srv.URL+"/down", &v)
	if err != nil || status != 503 || v.State != "stopped" {
		t.Errorf("Any /down = %d %+v %v, want 503 and the document", status, v, err)
	}
	if _, err := Any(ctx, srv.Client(), srv.URL+"/html", &v); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("Any /html = %v, want a decoding error", err)
	}
}
