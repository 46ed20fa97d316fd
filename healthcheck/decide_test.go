package healthcheck

import (
	"strings"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	backoff := 5 * time.Minute
	app1 := App{Name: "app1", InstanceID: "i-1", URL: "http://10.11.0.40:5000"}
	app2 := App{Name: "app2", InstanceID: "i-2", URL: "http://10.11.1.40:5000"}
	member := func(name, role, state string, answered bool) MemberState {
		return MemberState{Name: name, Role: role, State: state, Answered: answered, LagBytes: 0}
	}
	running := View{
		Leader:  &Leader{Name: "pg1", Region: "eu-west-3", Timeline: 2, State: "running", Confirmed: true, Ready: true},
		Members: []MemberState{member("pg1", "leader", "running", true), member("pg2", "sync_standby", "streaming", true)},
	}
	leaderDown := View{
		Leader:      &Leader{Name: "pg1", Region: "eu-west-3", Timeline: 2, State: "running"},
		Members:     []MemberState{member("pg1", "leader", "running", false), member("pg2", "sync_standby", "streaming", true)},
		Unreachable: []string{"pg1"},
	}
	promoting := View{
		Leader:  &Leader{Name: "pg2", Region: "eu-west-3", Timeline: 2, State: "running"},
		Members: []MemberState{member("pg2", "leader", "running", true)},
	}
	noLeader := View{Members: []MemberState{member("pg1", "", "", false), member("pg2", "replica", "running", true)}, Unreachable: []string{"pg1"}}
	allDown := View{Members: []MemberState{member("pg1", "", "", false), member("pg2", "", "", false)}, Unreachable: []string{"pg1", "pg2"}}
	stopped := View{Leader: &Leader{Name: "pg1", State: "stopped", Confirmed: false}, Members: []MemberState{member("pg1", "leader", "stopped", true)}}

	notReady := AppStatus{App: app1, Detail: "GET /readyz: 503 Service Unavailable"}
	ready := AppStatus{App: app1, Ready: true}

	tests := []struct {
		name        string
		o           Observation
		wantReady   bool
		wantReason  string // substring
		wantActions []Action
	}{
		{"ready cluster, ready app: nothing", Observation{View: running, WriteChecked: true, Apps: []AppStatus{ready}},
			true, "leader pg1 (eu-west-3, timeline 2) accepts writes", []Action{ActionNone}},
		{"ready cluster, app not ready, never restarted: restart", Observation{View: running, WriteChecked: true, Apps: []AppStatus{notReady}},
			true, "accepts writes", []Action{ActionRestart}},
		{"restarted 2 minutes ago: backoff", Observation{View: running, WriteChecked: true, Apps: []AppStatus{withRestart(notReady, now.Add(-2*time.Minute))}},
			true, "", []Action{ActionBackoff}},
		{"restarted just under the backoff ago: backoff", Observation{View: running, WriteChecked: true, Apps: []AppStatus{withRestart(notReady, now.Add(-backoff+time.Second))}},
			true, "", []Action{ActionBackoff}},
		{"restarted exactly the backoff ago: restart", Observation{View: running, WriteChecked: true, Apps: []AppStatus{withRestart(notReady, now.Add(-backoff))}},
			true, "", []Action{ActionRestart}},
		{"last restart unreadable: no restart", Observation{View: running, WriteChecked: true, Apps: []AppStatus{{App: app1, StoreErr: "AccessDenied"}}},
			true, "", []Action{ActionUnknown}},
		{"two apps, one ready", Observation{View: running, WriteChecked: true, Apps: []AppStatus{ready, {App: app2}}},
			true, "", []Action{ActionNone, ActionRestart}},
		{"no leader: hold", Observation{View: noLeader, Apps: []AppStatus{notReady}},
			false, "no leader", []Action{ActionHold}},
		{"every member down: hold", Observation{View: allDown, Apps: []AppStatus{notReady}},
			false, "no Patroni member answered (pg1, pg2)", []Action{ActionHold}},
		{"leader key held by a dead leader (failover pending): hold", Observation{View: leaderDown, Apps: []AppStatus{notReady}},
			false, "leader pg1 holds the leader key but did not answer", []Action{ActionHold}},
		{"new leader still promoting: hold", Observation{View: promoting, Apps: []AppStatus{notReady}},
			false, "promotion in progress", []Action{ActionHold}},
		{"leader stopped: hold", Observation{View: stopped, Apps: []AppStatus{notReady}},
			false, "leader pg1 is stopped", []Action{ActionHold}},
		{"leader running, writes fail: hold", Observation{View: running, WriteChecked: true, WriteErr: "server is in recovery", Apps: []AppStatus{notReady}},
			false, "writes through HAProxy fail: server is in recovery", []Action{ActionHold}},
		{"leader running, write check not run: hold", Observation{View: running, Apps: []AppStatus{notReady}},
			false, "write check not run", []Action{ActionHold}},
		{"not ready and app ready: nothing to hold", Observation{View: noLeader, Apps: []AppStatus{ready}},
			false, "no leader", []Action{ActionNone}},
		{"lag does not block readiness", Observation{View: withLag(running, 1<<30), WriteChecked: true, Apps: []AppStatus{notReady}},
			true, "", []Action{ActionRestart}},
		{"replica down does not block readiness", Observation{View: withDown(running, "pg2"), WriteChecked: true, Apps: []AppStatus{notReady}},
			true, "", []Action{ActionRestart}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.o, now, backoff)
			if d.Ready != tt.wantReady || !strings.Contains(d.Reason, tt.wantReason) {
				t.Errorf("ready %v %q, want %v containing %q", d.Ready, d.Reason, tt.wantReady, tt.wantReason)
			}
			if len(d.Apps) != len(tt.wantActions) {
				t.Fatalf("%d app decisions, want %d", len(d.Apps), len(tt.wantActions))
			}
			for i, a := range d.Apps {
				if a.Action != tt.wantActions[i] {
					t.Errorf("app %s: %s (%s), want %s", a.App.Name, a.Action, a.Reason, tt.wantActions[i])
				}
				if a.Reason == "" {
					t.Errorf("app %s: no reason", a.App.Name)
				}
			}
			if !tt.wantReady && len(d.Restarts()) > 0 {
				t.Errorf("restarts %v while the cluster is not ready", d.Restarts())
			}
		})
	}
}

func withRestart(a AppStatus, t time.Time) AppStatus { a.LastRestart = t; return a }

func withLag(v View, lag int64) View {
	v.Members = append([]MemberState(nil), v.Members...)
	v.Members[1].LagBytes = lag
	return v
}

func withDown(v View, name string) View {
	v.Members = append([]MemberState(nil), v.Members...)
	for i := range v.Members {
		if v.Members[i].Name == name {
			v.Members[i] = MemberState{Name: name, Error: "timeout", LagBytes: -1}
		}
	}
	v.Unreachable = append(v.Unreachable, name)
	return v
}
