package healthcheck

import (
	"context"
	"testing"
	"time"
)

func TestPatroniClientCaptured(t *testing.T) {
	var members []Member
	for _, m := range defaultMembers {
		m.URL = serveCaptured(t, "healthy", m.Name)
		members = append(members, m)
	}
	c := &PatroniClient{Timeout: time.Second}
	probes := c.ProbeAll(context.Background(), members)
	for _, p := range probes {
		if p.Err != nil || !p.Answered() || p.Cluster == nil {
			t.Fatalf("%s: %+v", p.Member.Name, p)
		}
		if p.Patroni.Patroni.Version != "4.0.7" || p.Patroni.Patroni.Name != p.Member.Name {
			t.Errorf("%s: patroni %+v", p.Member.Name, p.Patroni.Patroni)
		}
	}
	if !probes[1].Patroni.RunsAsPrimary() || probes[0].Patroni.RunsAsPrimary() {
		t.Errorf("primary: pg1 %v pg2 %v", probes[0].Patroni.RunsAsPrimary(), probes[1].Patroni.RunsAsPrimary())
	}
	if probes[0].Patroni.ReplicationState != "streaming" || probes[1].Patroni.XLog.Location == 0 {
		t.Errorf("pg1 %+v, pg2 %+v", probes[0].Patroni, probes[1].Patroni)
	}
	if v := Reconcile(probes); !v.Leader.Running() || v.Leader.Name != "pg2" {
		t.Errorf("leader %+v", v.Leader)
	}
}

// TestProbeAllBoundedByNodeTimeout proves the bound structurally: with two
// of three members black-holed, one check takes the per-node timeout, not
// the sum of the timeouts.
func TestProbeAllBoundedByNodeTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	members := []Member{
		{Name: "pg1", Region: "eu-west-3", URL: blackHole(t)},
		{Name: "pg2", Region: "eu-west-3", URL: serveCaptured(t, "healthy", "pg2")},
		{Name: "pg3", Region: "eu-west-1", URL: blackHole(t)},
	}
	c := &PatroniClient{Timeout: timeout}
	start := time.Now()
	probes := c.ProbeAll(context.Background(), members)
	took := time.Since(start)
	if took < timeout || took > timeout+timeout/2 {
		t.Errorf("took %s, want about the per-node timeout %s (not 2x)", took, timeout)
	}
	if probes[0].Answered() || probes[2].Answered() || !probes[1].Answered() {
		t.Errorf("answered: %v %v %v", probes[0].Answered(), probes[1].Answered(), probes[2].Answered())
	}
	if probes[0].Err == nil || probes[2].Err == nil {
		t.Error("no error for a black-holed member")
	}
	v := Reconcile(probes)
	if len(v.Unreachable) != 2 || v.Leader == nil || !v.Leader.Confirmed {
		t.Errorf("view %+v", v)
	}
	t.Logf("3 members, 2 black-holed, timeout %s: %s", timeout, took.Round(time.Millisecond))
}

func TestProbeNotPatroni(t *testing.T) {
	c := &PatroniClient{Timeout: time.Second}
	p := c.Probe(context.Background(), Member{Name: "x", URL: "http://127.0.0.1:1"})
	if p.Answered() || p.Err == nil {
		t.Errorf("probe of a closed port: %+v", p)
	}
}
