package healthcheck

import (
	"encoding/json"
	"io"
	"time"
)

// CloudWatch metric namespace, dimensions and names of what WriteEMF
// emits; the CDK construct's alarms use the same.
const (
	MetricNamespace = "pgha"
	DimCluster      = "Cluster"
	DimRegion       = "Region"

	MetricClusterReady      = "ClusterReady"      // 1 when ready, else 0
	MetricLeaderPresent     = "LeaderPresent"     // 1 when a running leader confirmed itself
	MetricHealthyMembers    = "HealthyMembers"    // members that answered and run
	MetricStreamingReplicas = "StreamingReplicas" // replicas streaming
	MetricMaxLagBytes       = "MaxReplicationLagBytes"
	MetricRestartsIssued    = "RestartsIssued"
	MetricUnreachable       = "UnreachableMembers"
	MetricCheckDuration     = "CheckDurationMs"
	// MetricPrimaries is the number of members whose own GET /patroni
	// says they run as the primary (View.Primaries): 1 when healthy, 0
	// during a failover, more than 1 in a split brain.
	MetricPrimaries = "Primaries"
	// MetricLeaderAway is 1 while a running leader is outside the primary
	// region: every commit then crosses regions.
	MetricLeaderAway = "LeaderOutsidePrimaryRegion"
	// MetricConfigPending is the number of members waiting for a restart
	// plus 1 while /config differs from the desired configuration (only
	// from the checker that applies it).
	MetricConfigPending = "ConfigChangesPending"
	// MetricBootsNotOK is the number of the region's nodes whose boot
	// failed, is degraded (no SSM agent) or never reported.
	MetricBootsNotOK = "NodeBootsNotOK"
	// MetricArchiveLag is how long WAL has waited to be archived
	// (ArchiveStatus.Lag): the data a restore from the repositories
	// would miss, beyond archive_timeout.
	MetricArchiveLag = "ArchiveLagSeconds"
	// MetricArchiveFailing is 1 while the leader's last archive attempt
	// failed.
	MetricArchiveFailing = "ArchiveFailing"
	// MetricBackupAge is the age of the newest backup in the region's
	// repository; NoBackupAge when it holds none.
	MetricBackupAge = "BackupAgeSeconds"
	// MetricVolumeUsed is the percent in use of the fullest PostgreSQL
	// data volume that reports to this region (Report.Volumes).
	MetricVolumeUsed = "DataVolumeUsedPercent"
)

// NoBackupAge is MetricBackupAge of a repository that holds no backup:
// older than any alarm's threshold.
const NoBackupAge = 1e9

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

// WriteEMF writes the check's metrics as one CloudWatch Embedded Metric
// Format document (one JSON line): CloudWatch Logs extracts the metrics from
// the Lambda's log, so emitting them costs no API call.
func WriteEMF(w io.Writer, clusterName, region string, r Report) error {
	v := r.Observation.View
	values := []struct {
		name, unit string
		value      float64
	}{
		{MetricClusterReady, "Count", b2f(r.Decision.Ready)},
		{MetricLeaderPresent, "Count", b2f(v.Leader.Running())},
		{MetricPrimaries, "Count", float64(len(v.Primaries))},
		{MetricHealthyMembers, "Count", float64(v.Healthy())},
		{MetricStreamingReplicas, "Count", float64(v.StreamingReplicas())},
		{MetricMaxLagBytes, "Bytes", float64(v.MaxLagBytes())},
		{MetricRestartsIssued, "Count", float64(len(r.Restarted))},
		{MetricUnreachable, "Count", float64(len(v.Unreachable))},
		{MetricCheckDuration, "Milliseconds", float64(r.Duration.Milliseconds())},
		{MetricLeaderAway, "Count", b2f(r.LeaderAway)},
	}
	if r.BootsChecked {
		values = append(values, struct {
			name, unit string
			value      float64
		}{MetricBootsNotOK, "Count", float64(len(r.BootsNotOK))})
	}
	type value = struct {
		name, unit string
		value      float64
	}
	if a := r.Archive; a != nil {
		values = append(values, value{MetricArchiveLag, "Seconds", a.Lag.Seconds()}, value{MetricArchiveFailing, "Count", b2f(a.Failing)})
	}
	if r.BackupChecked {
		age := NoBackupAge
		if !r.NewestBackup.IsZero() {
			age = r.Start.Sub(r.NewestBackup).Seconds()
		}
		values = append(values, value{MetricBackupAge, "Seconds", age})
	}
	if max, ok := MaxVolumeUsed(r.Volumes); ok {
		values = append(values, value{MetricVolumeUsed, "Percent", max})
	}
	if c := r.Config; c != nil {
		pending := float64(len(c.Pending))
		if len(c.Patched) > 0 || c.Err != "" {
			pending++
		}
		values = append(values, struct {
			name, unit string
			value      float64
		}{MetricConfigPending, "Count", pending})
	}
	doc := map[string]any{
		DimCluster: clusterName,
		DimRegion:  region,
	}
	metrics := make([]emfMetric, 0, len(values))
	for _, m := range values {
		metrics = append(metrics, emfMetric{Name: m.name, Unit: m.unit})
		doc[m.name] = m.value
	}
	ts := r.Start
	if ts.IsZero() {
		ts = time.Now()
	}
	doc["_aws"] = map[string]any{
		"Timestamp": ts.UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  MetricNamespace,
			"Dimensions": [][]string{{DimCluster, DimRegion}},
			"Metrics":    metrics,
		}},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
