package healthcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/pgha/pgha/internal/patroni"
)

// DefaultActionTimeout bounds one PATCH /config, POST /restart or POST
// /switchover: Patroni answers a restart once PostgreSQL is back.
const DefaultActionTimeout = 40 * time.Second

// ConfigStep is what one check did to bring Patroni's dynamic
// configuration to the desired one. Each check does at most one thing:
// PATCH /config, or restart one member, or one switchover; the next check
// sees the result. Restarts roll replicas first, and the leader last after
// a switchover to a synchronous standby, and only while every member is
// healthy, so a setting that needs a restart never takes more than one
// member away at a time.
type ConfigStep struct {
	// InSync is true when /config already held the desired configuration
	// and no member waits for a restart.
	InSync bool `json:"inSync"`
	// Patched lists the keys this check changed with PATCH /config.
	Patched []string `json:"patched,omitempty"`
	// Pending are the members whose PostgreSQL must restart for a setting
	// to take effect (Patroni's pending_restart).
	Pending []string `json:"pending,omitempty"`
	// Restarted is the member this check restarted.
	Restarted string `json:"restarted,omitempty"`
	// Switchover is "old -> new" when this check moved the leader away
	// so that the old one can restart.
	Switchover string `json:"switchover,omitempty"`
	// Waiting says why nothing was done although something is pending.
	Waiting string `json:"waiting,omitempty"`
	// Err is a failed PATCH, restart or switchover.
	Err string `json:"error,omitempty"`
}

// ConfigPatch returns the PATCH /config body that turns current into
// desired, or nil when they agree. Only the keys desired sets are
// compared; a PostgreSQL parameter that current has and desired does not
// is removed (set to null), so removing it from the configuration resets
// it. Values compare as Patroni's JSON: "200" and 200 differ.
func ConfigPatch(current, desired map[string]any) map[string]any {
	patch := map[string]any{}
	for k, want := range desired {
		if k == "postgresql" {
			continue
		}
		if !reflect.DeepEqual(current[k], want) {
			patch[k] = want
		}
	}
	wantPG, _ := desired["postgresql"].(map[string]any)
	havePG, _ := current["postgresql"].(map[string]any)
	pg := map[string]any{}
	for k, want := range wantPG {
		if k == "parameters" {
			continue
		}
		if !reflect.DeepEqual(havePG[k], want) {
			pg[k] = want
		}
	}
	wantParams, setsParams := wantPG["parameters"].(map[string]any)
	haveParams, _ := havePG["parameters"].(map[string]any)
	params := map[string]any{}
	for k, want := range wantParams {
		if !reflect.DeepEqual(haveParams[k], want) {
			params[k] = want
		}
	}
	for k := range haveParams {
		if _, ok := wantParams[k]; !ok && setsParams {
			params[k] = nil
		}
	}
	if len(params) > 0 {
		pg["parameters"] = params
	}
	if len(pg) > 0 {
		patch["postgresql"] = pg
	}
	if len(patch) == 0 {
		return nil
	}
	return patch
}

// patchKeys lists a patch's keys, "postgresql.parameters.x" for nested ones.
func patchKeys(patch map[string]any) []string {
	var out []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok && (k == "postgresql" || k == "parameters") {
				walk(prefix+k+".", sub)
				continue
			}
			out = append(out, prefix+k)
		}
	}
	walk("", patch)
	slices.Sort(out)
	return out
}

// applyConfig is the configuration part of a check; see ConfigStep.
// desired is the dynamic configuration as JSON (render.DynamicConfig).
func (c *Checker) applyConfig(ctx context.Context, desired json.RawMessage, probes []Probe, v View) *ConfigStep {
	step := &ConfigStep{}
	if !v.Leader.Running() {
		step.Waiting = "no running leader"
		return step
	}
	leader := memberURL(probes, v.Leader.Name)
	var want, have map[string]any
	if err := json.Unmarshal(desired, &want); err != nil {
		step.Err = fmt.Sprintf("desired configuration: %v", err)
		return step
	}
	ctx, cancel := context.WithTimeout(ctx, c.actionTimeout())
	defer cancel()
	if err := c.patroniJSON(ctx, http.MethodGet, leader+"/config", nil, &have); err != nil {
		step.Err = err.Error()
		return step
	}
	if patch := ConfigPatch(have, want); patch != nil {
		step.Patched = patchKeys(patch)
		if err := c.patroniJSON(ctx, http.MethodPatch, leader+"/config", patch, nil); err != nil {
			step.Err = err.Error()
		}
		// Members see the change at their next loop; restarts wait for
		// the next check.
		return step
	}

	// Restarts, one member per check, only while the cluster is whole.
	var replicas []MemberState
	leaderPending := false
	for _, p := range probes {
		if p.Patroni == nil || !p.Patroni.PendingRestart {
			continue
		}
		step.Pending = append(step.Pending, p.Member.Name)
		if p.Member.Name == v.Leader.Name {
			leaderPending = true
		}
	}
	if len(step.Pending) == 0 {
		step.InSync = true
		return step
	}
	for _, m := range v.Members {
		if !m.Healthy() {
			step.Waiting = fmt.Sprintf("%s is not healthy", m.Name)
			return step
		}
		if m.Name != v.Leader.Name {
			if !m.Streaming {
				step.Waiting = fmt.Sprintf("%s is not streaming", m.Name)
				return step
			}
			replicas = append(replicas, m)
		}
	}
	if n := syncStandbysWanted(want, len(replicas)); countRole(replicas, patroni.RoleSyncStandby) < n {
		step.Waiting = fmt.Sprintf("%d of %d synchronous standbys", countRole(replicas, patroni.RoleSyncStandby), n)
		return step
	}
	for _, m := range replicas {
		if slices.Contains(step.Pending, m.Name) {
			step.Restarted = m.Name
			if err := c.patroniJSON(ctx, http.MethodPost, memberURL(probes, m.Name)+"/restart", map[string]any{"restart_pending": true}, nil); err != nil {
				step.Err = err.Error()
			}
			return step
		}
	}
	if !leaderPending {
		return step
	}
	// The leader last: hand over to a synchronous standby that has
	// already restarted, one in the leader's own region first; if there is
	// none, restart the leader in place.
	candidate := ""
	for _, sameRegion := range []bool{true, false} {
		for _, m := range replicas {
			if candidate == "" && m.Role == patroni.RoleSyncStandby && !slices.Contains(step.Pending, m.Name) &&
				(m.Region == v.Leader.Region || !sameRegion) {
				candidate = m.Name
			}
		}
	}
	if candidate == "" {
		step.Restarted = v.Leader.Name
		if err := c.patroniJSON(ctx, http.MethodPost, leader+"/restart", map[string]any{"restart_pending": true}, nil); err != nil {
			step.Err = err.Error()
		}
		return step
	}
	step.Switchover = v.Leader.Name + " -> " + candidate
	if err := c.patroniJSON(ctx, http.MethodPost, leader+"/switchover", map[string]any{"leader": v.Leader.Name, "candidate": candidate}, nil); err != nil {
		step.Err = err.Error()
	}
	return step
}

// syncStandbysWanted is how many synchronous standbys Patroni keeps under
// the configuration, given the number of replicas.
func syncStandbysWanted(cfg map[string]any, replicas int) int {
	if on, _ := cfg["synchronous_mode"].(bool); !on {
		return 0
	}
	n := 1
	if f, ok := cfg["synchronous_node_count"].(float64); ok {
		n = int(f)
	}
	return min(n, replicas)
}

func countRole(ms []MemberState, role string) int {
	n := 0
	for _, m := range ms {
		if m.Role == role {
			n++
		}
	}
	return n
}

func memberURL(probes []Probe, name string) string {
	for _, p := range probes {
		if p.Member.Name == name {
			return p.Member.URL
		}
	}
	return ""
}

func (c *Checker) actionTimeout() time.Duration {
	if c.ActionTimeout > 0 {
		return c.ActionTimeout
	}
	return DefaultActionTimeout
}

// patroniJSON sends body (if any) as JSON and decodes a 2xx answer into
// out (if any); other answers are errors carrying Patroni's text.
func (c *Checker) patroniJSON(ctx context.Context, method, url string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Patroni != nil && c.Patroni.User != "" {
		req.SetBasicAuth(c.Patroni.User, c.Patroni.Password)
	}
	resp, err := c.Patroni.client().Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, url, err)
		}
	}
	return nil
}
