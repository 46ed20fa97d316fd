package healthcheck

import (
	"context"
	"strings"
)

// BootReader reads the boot status each node reports (the SSM parameters
// under render.BootStatusPath: "ok", "booting", "degraded: ..." or
// "failed: ...", then a time), by node name.
type BootReader interface {
	BootStatuses(ctx context.Context) (map[string]string, error)
}

// BootsNotOK returns, in the order of nodes, each node whose boot did not
// report "ok": it failed, runs degraded (no SSM agent), is still booting,
// or never reported, with its status ("none" when it never reported).
func BootsNotOK(nodes []string, statuses map[string]string) []string {
	var out []string
	for _, n := range nodes {
		st, ok := statuses[n]
		switch {
		case !ok:
			out = append(out, n+": none")
		case strings.Fields(st + " x")[0] != "ok":
			out = append(out, n+": "+st)
		}
	}
	return out
}
