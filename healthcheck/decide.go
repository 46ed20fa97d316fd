package healthcheck

import (
	"fmt"
	"strings"
	"time"

	"github.com/pgha/pgha/internal/patroni"
)

// Action is what the checker does about one app instance.
type Action string

// The actions.
const (
	// ActionNone: the app is ready, nothing to do.
	ActionNone Action = "none"
	// ActionHold: the cluster is not ready, so the app is left alone.
	ActionHold Action = "hold"
	// ActionRestart: the cluster is ready, the app is not: restart it.
	ActionRestart Action = "restart"
	// ActionBackoff: it would be restarted, but it was restarted less than
	// the backoff ago (a crash-looping app is not restarted every minute).
	ActionBackoff Action = "backoff"
	// ActionUnknown: its last restart could not be read; it is not
	// restarted, so a broken store cannot turn into a restart every minute.
	ActionUnknown Action = "unknown"
)

// AppStatus is what was observed of one app instance.
type AppStatus struct {
	App App `json:"app"`
	// Ready is true when GET /readyz answered 200.
	Ready bool `json:"ready"`
	// Detail says why it is not ready (status or error).
	Detail string `json:"detail,omitempty"`
	// LastRestart is when the checker last restarted it; zero if never.
	// Only read when the cluster is ready and the app is not.
	LastRestart time.Time `json:"lastRestart,omitzero"`
	// StoreErr is set when LastRestart could not be read.
	StoreErr string `json:"storeError,omitempty"`
}

// Observation is everything one check saw; Decide needs nothing else.
type Observation struct {
	View View `json:"view"`
	// WriteChecked is true when the write check ran (it is skipped while
	// there is no running leader).
	WriteChecked bool `json:"writeChecked"`
	// WriteErr is the write check's failure; empty when writes work.
	WriteErr string      `json:"writeError,omitempty"`
	Apps     []AppStatus `json:"apps"`
}

// Decision is the outcome of one check.
type Decision struct {
	// Ready is true when a running leader accepts writes.
	Ready bool `json:"ready"`
	// Reason says why the cluster is, or is not, ready.
	Reason string        `json:"reason"`
	Apps   []AppDecision `json:"apps"`
}

// AppDecision is the action for one app instance and why.
type AppDecision struct {
	App    App    `json:"app"`
	Action Action `json:"action"`
	Reason string `json:"reason"`
}

// Restarts are the apps to restart.
func (d Decision) Restarts() []App {
	var out []App
	for _, a := range d.Apps {
		if a.Action == ActionRestart {
			out = append(out, a.App)
		}
	}
	return out
}

// ClusterReady decides from the View and the write check whether the
// cluster is ready, and says why. It is pure.
func ClusterReady(v View, writeChecked bool, writeErr string) (bool, string) {
	answered := 0
	for _, m := range v.Members {
		if m.Answered {
			answered++
		}
	}
	switch {
	case answered == 0:
		return false, fmt.Sprintf("no Patroni member answered (%s)", strings.Join(v.Unreachable, ", "))
	case v.Leader == nil:
		return false, "no leader: no member holds the leader key" + unreachableSuffix(v)
	case !v.Leader.Running():
		return false, v.leaderNotReady()
	case !writeChecked:
		return false, "write check not run"
	case writeErr != "":
		return false, fmt.Sprintf("leader %s is running but writes through HAProxy fail: %s", v.Leader.Name, writeErr)
	}
	return true, fmt.Sprintf("leader %s (%s, timeline %d) accepts writes through HAProxy", v.Leader.Name, v.Leader.Region, v.Leader.Timeline)
}

// Decide says whether the cluster is ready and what to do about each app
// instance: hold them all while the cluster is not ready; once it is,
// restart an app that is not ready unless it was restarted less than backoff
// before now. It is pure.
func Decide(o Observation, now time.Time, backoff time.Duration) Decision {
	ready, reason := ClusterReady(o.View, o.WriteChecked, o.WriteErr)
	d := Decision{Ready: ready, Reason: reason}
	for _, a := range o.Apps {
		ad := AppDecision{App: a.App}
		switch {
		case a.Ready:
			ad.Action, ad.Reason = ActionNone, "ready"
		case !ready:
			ad.Action, ad.Reason = ActionHold, "not ready ("+orUnknown(a.Detail)+"), but the cluster is not ready either: "+reason
		case a.StoreErr != "":
			ad.Action, ad.Reason = ActionUnknown, "not ready ("+orUnknown(a.Detail)+") but its last restart is unknown: "+a.StoreErr
		case !a.LastRestart.IsZero() && now.Sub(a.LastRestart) < backoff:
			ad.Action = ActionBackoff
			ad.Reason = fmt.Sprintf("not ready (%s); restarted %s ago, next restart allowed in %s",
				orUnknown(a.Detail), now.Sub(a.LastRestart).Round(time.Second), (backoff - now.Sub(a.LastRestart)).Round(time.Second))
		default:
			ad.Action, ad.Reason = ActionRestart, "not ready ("+orUnknown(a.Detail)+") while the cluster is ready"
		}
		d.Apps = append(d.Apps, ad)
	}
	return d
}

// leaderNotReady says why the leader is not ready (patroni.Ready).
func (v View) leaderNotReady() string {
	l := v.Leader
	switch {
	case l.State != patroni.StateRunning:
		return fmt.Sprintf("leader %s is %s, not running", l.Name, orUnknown(l.State)) + unreachableSuffix(v)
	case !l.Confirmed:
		if m, ok := v.member(l.Name); ok && !m.Answered {
			return fmt.Sprintf("leader %s holds the leader key but did not answer (failover pending)", l.Name) + unreachableSuffix(v)
		}
		return fmt.Sprintf("leader %s does not yet run as primary (promotion in progress)", l.Name)
	}
	return fmt.Sprintf("leader %s is not ready", l.Name)
}

func (v View) member(name string) (MemberState, bool) {
	for _, m := range v.Members {
		if m.Name == name {
			return m, true
		}
	}
	return MemberState{}, false
}

func unreachableSuffix(v View) string {
	if len(v.Unreachable) == 0 {
		return ""
	}
	return fmt.Sprintf("; unreachable: %s", strings.Join(v.Unreachable, ", "))
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
