package drill

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pgha/pgha/cluster"
)

// etcdDrills are the losses of an etcd member's data.
var etcdDrills = []Drill{
	{
		Name: "etcd-member-replace", Doc: "lose a follower etcd member's data (etcd stopped, its data directory emptied) and replace it with the node's pgha-etcd-rejoin (member remove, member add, state \"existing\"), then the same for the etcd leader: every member must list the new ID, healthy",
		Targets: Targets{NoInterruption: true},
		inject:  etcdMemberReplace,
	},
}

func etcdMemberReplace(ctx context.Context, r *runner) error {
	members, err := etcdByLeadership(ctx, r.plan)
	if err != nil {
		return err
	}
	if len(members) < 3 {
		return fmt.Errorf("need 3 etcd members, have %d", len(members))
	}
	r.mark()
	// A follower first, then whichever member leads by then.
	for i, role := range []string{"follower", "leader"} {
		node := members[len(members)-1]
		if i > 0 {
			if members, err = etcdByLeadership(ctx, r.plan); err != nil {
				return err
			}
			node = members[0]
		}
		before, err := etcdAgree(ctx, r)
		if err != nil {
			return fmt.Errorf("before replacing %s: %w", node, err)
		}
		r.res.Faulted = append(r.res.Faulted, node)
		start := time.Now()
		out, err := r.cluster.ReplaceEtcdMember(ctx, node)
		took := time.Since(start)
		if err != nil {
			return err
		}
		r.log.Info("etcd member replaced", "node", node, "role", role, "took", took.Round(100*time.Millisecond), "script", out)
		after, err := etcdAgree(ctx, r)
		if err != nil {
			r.problem("after replacing %s: %v", node, err)
			continue
		}
		if after[node] == "" || after[node] == before[node] {
			r.problem("%s is member %q after its replacement, was %q: want a new ID", node, after[node], before[node])
		}
		r.figure("%s %s replaced in %s (member %s → %s)", role, node, fmtDur(took), before[node], after[node])
	}
	r.healAt = time.Now()
	return nil
}

// etcdAgree asks every etcd member, healthy, for the member list; they
// must all list the same members, one per etcd node of the plan, each
// started. It returns each node's member ID.
func etcdAgree(ctx context.Context, r *runner) (map[string]string, error) {
	var first string
	ids := map[string]string{}
	for _, n := range r.plan.ByRole(cluster.RoleEtcd) {
		ms, err := r.cluster.EtcdMembers(ctx, n.Name)
		if err != nil {
			return nil, err
		}
		var list []string
		for _, m := range ms {
			list = append(list, m.ID+"="+m.Name)
			if m.Name == "" || len(m.ClientURLs) == 0 {
				return nil, fmt.Errorf("%s lists member %s as not started", n.Name, m.ID)
			}
			ids[m.Name] = m.ID
		}
		slices.Sort(list)
		got := strings.Join(list, ",")
		if first == "" {
			first = got
		} else if got != first {
			return nil, fmt.Errorf("the members disagree: %s lists %s, another %s", n.Name, got, first)
		}
	}
	for _, n := range r.plan.ByRole(cluster.RoleEtcd) {
		if ids[n.Name] == "" {
			return nil, fmt.Errorf("%s is not in the member list %s", n.Name, first)
		}
	}
	if len(ids) != len(r.plan.ByRole(cluster.RoleEtcd)) {
		return nil, fmt.Errorf("the member list %s has members the plan does not", first)
	}
	return ids, nil
}
