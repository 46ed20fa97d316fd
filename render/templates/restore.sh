#!/bin/bash
# {{.Header}}
#
# Point-in-time recovery of the whole cluster from the backups, one step per
# call, run as root on the PostgreSQL nodes in this order (pgha-local
# restore does it; on AWS, SSM Run Command, see the README):
#
#   1. restore check TIME       on the node that will restore: refuses a TIME
#                               in the future or before the oldest backup
#                               of every repository (nothing is touched)
#   2. restore archive          on the leader, if there is one: commit a
#                               transaction (recovery stops at the first
#                               commit after TIME: without one it would
#                               never reach TIME), switch WAL and wait until
#                               every repository has it
#   3. restore stop             on every node: Patroni and the backup timers
#   4. restore begin TIME       on the node that restores (one of the primary
#                               region's): check again, then the cluster is
#                               removed from etcd, the data directory moved
#                               aside (kept), and Patroni bootstraps the
#                               cluster from the newest backup before TIME
#                               and the archived WAL up to TIME (Patroni's
#                               custom bootstrap), then promotes it
#   5. restore wait             on that node: until it leads; if the
#                               bootstrap failed (the archive does not reach
#                               TIME), Patroni is stopped and why is printed
#                               with the newest time the archive reaches;
#                               then begin again with an earlier TIME
#   6. restore finish           on that node: a full backup of the new
#                               timeline into every repository, which the
#                               replicas are built from, and the timers
#   7. restore join             on every other node: its data directory is
#                               removed and Patroni builds it again as a
#                               replica, from that backup
#
# TIME is a UTC time as PostgreSQL reads it ("2026-12-02 18:40:00+00").
set -euo pipefail
log() { echo "pgha-restore: $*"; }
pgbackrest() { runuser -u postgres -- {{.PgBackRest}} --log-level-console=info "$@"; }
timers=({{.Timers}})
started={{.RestoreConfig}}.started
step=${1:?usage: restore check TIME | archive | stop | begin TIME | wait | finish | join}

# start UNIT...: systemctl start, tried three times (in a container,
# systemd 257 once failed to spawn its executor for Patroni, "No such file or
# directory", and started it fine a moment later).
start() {
	systemctl start "$@" || { sleep 2 && systemctl start "$@"; } || { sleep 2 && systemctl start "$@"; }
}

# restorable TIME: fails, saying why, unless a repository holds a backup
# that ended before TIME, and TIME is not in the future.
restorable() {
	local at
	at=$(date -u -d "$1" +%s.%N) || {
		log "$1 is not a time"
		return 1
	}
	runuser -u postgres -- {{.PgBackRest}} --output=json info | python3 -c '
import json, sys, time
target = float(sys.argv[1])
fmt = lambda t: time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(t))
if target > time.time():
    sys.exit("pgha-restore: %s is in the future" % fmt(target))
info = json.load(sys.stdin)[0]
stops = sorted(b["timestamp"]["stop"] for b in info.get("backup", []))
if not stops:
    sys.exit("pgha-restore: no repository holds a backup (%s): nothing to restore from" % info["status"]["message"])
if stops[0] >= target:
    sys.exit("pgha-restore: the oldest backup ended at %s, after %s: restore to a time after it" % (fmt(stops[0]), fmt(target)))
print("pgha-restore: restorable: from %s, the oldest backup, to the newest archived WAL; %d backups" % (fmt(stops[0]), len(stops)))
' "$at"
}

case $step in
check)
	restorable "${2:?restore check TIME}"
	;;
archive)
	# A commit stamped now: PostgreSQL stops recovery at the first commit
	# after the target time, and ends it in error if there is none.
	runuser -u postgres -- psql -XAtq -h {{.SocketDir}} -c 'SELECT pg_current_xact_id()' >/dev/null
	pgbackrest check
	;;
stop)
	systemctl stop "${timers[@]}" 'pgha-backup@*.service'
	systemctl stop {{.Patroni}}
	log "Patroni and the backup timers are stopped"
	;;
begin)
	target=${2:?restore begin TIME}
	if systemctl is-active --quiet {{.Patroni}}; then
		log "Patroni is running: restore stop first, on every node"
		exit 1
	fi
	restorable "$target"
	date -u +%s >"$started"
	# patronictl asks for the cluster's name and a confirmation.
	printf '%s\nYes I am aware\n' {{.Scope}} | runuser -u postgres -- patronictl -c {{.PatroniConfig}} remove {{.Scope}} >/dev/null
	if [[ -d {{.DataDir}} ]]; then
		aside={{.DataDir}}.before-restore-$(date -u +%Y%m%dT%H%M%SZ)
		mv {{.DataDir}} "$aside"
		log "the data directory is kept in $aside"
	fi
	umask 027
	cat >{{.RestoreConfig}}.new <<PGHA_RESTORE
# {{.Header}}: written by restore begin, removed by restore finish
bootstrap:
  method: pgbackrest
  pgbackrest:
    command: '{{.PgBackRest}} --type=time "--target=$target" --target-action=promote restore'
    keep_existing_recovery_conf: true
    no_params: true
PGHA_RESTORE
	chown postgres:postgres {{.RestoreConfig}}.new
	mv {{.RestoreConfig}}.new {{.RestoreConfig}}
	rm -rf {{.DataDir}}.failed # a failed restore's, which Patroni renames
	start {{.Patroni}}
	log "Patroni is restoring the cluster to $target"
	;;
wait)
	since=$(cat "$started")
	until curl -fs -o /dev/null --max-time 5 --cacert {{.CAFile}} {{.PrimaryURL}}; do
		if journalctl -u {{.Patroni}} --since "@$since" -o cat | grep -q 'Failed to bootstrap cluster'; then
			systemctl stop {{.Patroni}}
			log "the restore failed; Patroni is stopped. pgBackRest and PostgreSQL said:"
			{
				journalctl -u {{.Patroni}} --since "@$since" -o cat | grep -E 'ERROR: \[' | tail -n 1
				find {{.LogDir}} -name '*.log' -newer "$started" -exec grep -hE 'last completed transaction|recovery ended before' {} + | tail -n 2
			} || true
			log "restore begin again with an earlier time (the archive reaches the last completed transaction above at most)"
			exit 1
		fi
		sleep 2
	done
	log "this node leads the restored cluster"
	;;
finish)
	rm -f {{.RestoreConfig}} "$started"
	for repo in {{.Repos}}; do
		pgbackrest --repo="$repo" --type=full backup
	done
	start "${timers[@]}"
	;;
join)
	if systemctl is-active --quiet {{.Patroni}}; then
		log "Patroni is running: restore stop first"
		exit 1
	fi
	rm -rf {{.DataDir}}
	start {{.Patroni}} "${timers[@]}"
	log "Patroni builds this node again as a replica"
	;;
*)
	log "unknown step $step"
	exit 2
	;;
esac
