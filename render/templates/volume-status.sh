#!/bin/sh
# {{.Header}}
#
# Reports how full this node's data volume is ({{.Mount}}: PostgreSQL's
# data and its WAL, pg_wal, share it), in percent used, to the SSM
# parameter {{.Parameter}}. The health checker reads every node's and
# puts the largest in its metric DataVolumeUsedPercent, which alarms:
# a full volume fails every write that needs space while PostgreSQL,
# Patroni and HAProxy all still say the leader is fine.
# {{.Timer}} runs it every 15 s; it writes the parameter when the
# figure changed, else every 10 minutes, to spare SSM's write quota.
set -eu
used=$(df --output=pcent {{.Mount}} | tail -n 1 | tr -dc 0-9)
last=/run/pgha-volume-used
if [ "$(cat "$last" 2>/dev/null)" = "$used" ] && [ -n "$(find "$last" -mmin -10)" ]; then
	exit 0
fi
aws ssm put-parameter --region {{.Region}} --name {{.Parameter}} --type String --overwrite --value "$used" >/dev/null
echo "$used" >"$last"
