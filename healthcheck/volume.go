package healthcheck

import (
	"context"
	"strconv"
	"strings"
)

// VolumeReader reads how full each PostgreSQL node's data volume is, as
// the node reports it (the SSM parameters under render.VolumeStatusPath:
// the percent in use), by node name.
type VolumeReader interface {
	VolumeStatuses(ctx context.Context) (map[string]string, error)
}

// VolumeFullPercent is the use at which a data volume counts as full:
// df rounds up, so 100 is a volume with less than 1 % free, where writes
// that need a new page fail.
const VolumeFullPercent = 100

// VolumesUsed parses the nodes' reports into percent used, by node; a
// report that is not a number in [0, 100] is left out.
func VolumesUsed(statuses map[string]string) map[string]float64 {
	out := map[string]float64{}
	for node, st := range statuses {
		v, err := strconv.ParseFloat(strings.TrimSpace(st), 64)
		if err == nil && v >= 0 && v <= 100 {
			out[node] = v
		}
	}
	return out
}

// MaxVolumeUsed is the fullest volume's use in percent, and false when
// there is no report.
func MaxVolumeUsed(used map[string]float64) (float64, bool) {
	max, ok := 0.0, false
	for _, v := range used {
		if !ok || v > max {
			max, ok = v, true
		}
	}
	return max, ok
}
