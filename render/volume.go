package render

import (
	"bytes"
	"fmt"

	"github.com/pgha/pgha/cluster"
)

// VolumeScript reports how full a PostgreSQL node's data volume is
// (VolumeStatusParameter), run by volumeTimer.
const VolumeScript = "/usr/local/lib/pgha/volume-status"

const (
	volumeUnit  = "pgha-volume.service"
	volumeTimer = "pgha-volume.timer"
)

// VolumeStatusPath is the path of every PostgreSQL node's
// VolumeStatusParameter.
func VolumeStatusPath(c cluster.Config) string { return "/pgha/" + c.Name + "/volume" }

// VolumeStatusParameter is the SSM parameter (in BootStatusRegion) where
// PostgreSQL node n reports the percent of its data volume in use.
func VolumeStatusParameter(c cluster.Config, n cluster.Node) string {
	return VolumeStatusPath(c) + "/" + n.Name
}

var volumeTmpl = parse("templates/volume-status.sh")

// VolumeStatus renders VolumeScript for PostgreSQL node n.
func VolumeStatus(p *cluster.Plan, n cluster.Node) (string, error) {
	var buf bytes.Buffer
	err := volumeTmpl.Execute(&buf, map[string]any{
		"Header":    Header,
		"Mount":     DataMount,
		"Parameter": VolumeStatusParameter(p.Config, n),
		"Region":    BootStatusRegion(p, n),
		"Timer":     volumeTimer,
	})
	if err != nil {
		return "", fmt.Errorf("render the volume report of %s: %w", n.Name, err)
	}
	return buf.String(), nil
}

// volumeUnits are VolumeScript's service and its timer: every 15 s, to
// the second (systemd's default accuracy is a minute).
func volumeUnits(n cluster.Node) (service, timer string) {
	return oneshotUnit("report how full "+n.Name+"'s data volume is", VolumeScript),
		timerUnit("report how full "+n.Name+"'s data volume is, every 15 s", "OnBootSec=15s\nOnUnitActiveSec=15s\nAccuracySec=1s")
}
