#!/bin/bash
# {{.Header}}
#
# Point-in-time recovery of the whole cluster from the backups, one step per
# call, run as root on the PostgreSQL nodes in this order (pgha-local
# restore does it; on AWS, SSM Run Command, see the README):
#
#   1. restore archive          on the leader, if there is one: switch WAL and
#                               wait until every repository has it, so that
#                               the target time is in the archive
#   2. restore stop             on every node: Patroni and the backup timers
#   3. restore begin TIME       on the node that restores (one of the primary
#                               region's): the cluster is removed from etcd,
#                               the data directory moved aside (kept), and
#                               Patroni bootstraps the cluster from the
#                               newest backup before TIME and the archived
#                               WAL up to TIME (Patroni's custom bootstrap),
#                               then promotes it
#   4. restore finish           on that node once it leads: a full backup of
#                               the new timeline into every repository, which
#                               the replicas are built from, and the timers
#   5. restore join             on every other node: its data directory is
#                               removed and Patroni builds it again as a
#                               replica, from that backup
#
# TIME is a UTC time as PostgreSQL reads it ("2026-12-02 18:40:00+00").
set -euo pipefail
log() { echo "pgha-restore: $*"; }
pgbackrest() { runuser -u postgres -- {{.PgBackRest}} --log-level-console=info "$@"; }
timers=({{.Timers}})
step=${1:?usage: restore archive | stop | begin TIME | finish | join}
case $step in
archive)
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
	systemctl start {{.Patroni}}
	log "Patroni is restoring the cluster to $target"
	;;
finish)
	rm -f {{.RestoreConfig}}
	for repo in {{.Repos}}; do
		pgbackrest --repo="$repo" --type=full backup
	done
	systemctl start "${timers[@]}"
	;;
join)
	if systemctl is-active --quiet {{.Patroni}}; then
		log "Patroni is running: restore stop first"
		exit 1
	fi
	rm -rf {{.DataDir}}
	systemctl start {{.Patroni}} "${timers[@]}"
	log "Patroni builds this node again as a replica"
	;;
*)
	log "unknown step $step"
	exit 2
	;;
esac
