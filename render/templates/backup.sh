#!/bin/bash
# {{.Header}}
#
# backup full|diff|first: a backup of the cluster into every repository
# (pgBackRest's repo {{.Repos}}), taken by one PostgreSQL node only. Every
# node's pgha-backup-*.timer runs it; it goes on only on the node that
# Patroni's view names: the streaming standby with the least lag, those of
# the leader's region first, or the leader when no standby streams. That
# node's pgBackRest copies its own files (backup-standby=prefer) and asks
# the leader for pg_backup_start/stop through the leader's TLS server.
#
# "first" takes a full backup into each repository that has none and
# does nothing otherwise: it runs every 30 s, so that a new cluster is
# protected within a minute of having a leader. It creates the stanza first, which
# the leader's WAL archiving waits for (WAL stays in pg_wal until then).
#
# A repository that fails does not stop the others; the script then fails,
# and the health checker's backup-age metric shows it.
set -euo pipefail
log() { echo "pgha-backup: $*"; }
kind=${1:?usage: backup full|diff|first}
case $kind in full | diff | first) ;; *)
	log "unknown kind $kind"
	exit 2
	;;
esac
pgbackrest() { {{.PgBackRest}} "$@"; }

# No leader (yet): a scheduled backup fails, "first" waits for its next run.
no_leader() {
	log "no running leader: no $kind backup"
	[[ $kind == first ]]
	exit
}
members=$(curl -fsS --max-time 10 --cacert {{.CAFile}} {{.Patroni}}) || no_leader
chosen=$(python3 -c '
import json, sys
region = dict(a.split("=", 1) for a in sys.argv[1:])
members = json.load(sys.stdin)["members"]
leader = [m for m in members if m["role"] == "leader" and m["state"] == "running"]
if not leader:
    sys.exit(0)
def lag(m):
    return m["lag"] if isinstance(m.get("lag"), int) else 1 << 62
standbys = [m for m in members if m["role"] in ("sync_standby", "quorum_standby", "replica")
            and m["state"] == "streaming" and lag(m) < 16 << 20]
standbys.sort(key=lambda m: (region.get(m["name"]) != region.get(leader[0]["name"]), lag(m), m["name"]))
print((standbys or leader)[0]["name"])
' {{.Regions}} <<<"$members")
[[ -n $chosen ]] || no_leader
if [[ $chosen != {{.Name}} ]]; then
	[[ $kind == first ]] || log "$chosen takes the $kind backup, not {{.Name}}"
	exit 0
fi

# without_backup REPO...: those of the repositories that hold no backup
# (info fails for a repository it cannot read: it counts as holding none).
without_backup() {
	pgbackrest --output=json info 2>/dev/null | python3 -c '
import json, sys
try:
    stanza = json.load(sys.stdin)[0]
except Exception:
    stanza = {}
have = {str(b["database"]["repo-key"]) for b in stanza.get("backup", [])}
print("\n".join(r for r in sys.argv[1:] if r not in have))
' "$@"
}

repos=({{.Repos}})
type=$kind
if [[ $kind == first ]]; then
	mapfile -t repos <<<"$(without_backup "${repos[@]}")"
	[[ -n ${repos[0]:-} ]] || exit 0
	type=full
	log "repositories without a backup: ${repos[*]}"
	# In every repository it can reach (one unreachable fails the
	# command, not the others' backups). Offline: from this node's
	# pg_control (every member has the cluster's system identifier),
	# without the leader's archive lock, which its archiving holds.
	pgbackrest --log-level-console=info --no-online stanza-create || log "stanza-create failed"
fi
failed=() busy=()
for repo in "${repos[@]}"; do
	log "$type backup into repository $repo"
	rc=0
	pgbackrest --log-level-console=info --repo="$repo" --type="$type" backup || rc=$?
	# 50 is pgBackRest's LockAcquireError: a backup holds its
	# repository's lock (<stanza>-backup-<repo>.lock) on the node it runs
	# on and, through the TLS server, on the leader and the standby it
	# copies from, so another node's backup into this repository runs.
	if ((rc == 50)); then
		busy+=("$repo")
	elif ((rc != 0)); then
		failed+=("$repo")
	fi
done
if ((${#busy[@]} > 0)); then
	# A first backup is tried again in 30 s; a scheduled one is lost.
	if [[ $kind == first ]]; then
		log "another node's backup is running: repository ${busy[*]} is tried again in 30 s"
	else
		log "another node's backup is running: no $type backup into repository ${busy[*]}"
		exit 1
	fi
fi
if [[ $kind == first ]] && ((${#failed[@]} > 0)); then
	# The goal is a backup in every repository: another node's run (its
	# view of who takes it differed for a moment) may have taken it, and
	# may be why this one failed.
	mapfile -t failed <<<"$(without_backup "${failed[@]}")"
	[[ -n ${failed[0]:-} ]] || failed=()
fi
if ((${#failed[@]} > 0)); then
	log "the $type backup failed in repository ${failed[*]}"
	exit 1
fi
