#!/bin/bash
# {{.Header}}
#
# Replaces etcd member {{.Name}} after its data was lost (a new disk, a data
# directory removed or corrupt): run as root on this node, {{.Script}}
# [--force]. pgha-local etcd-replace runs it; on AWS, Session Manager or
# Run Command (see the README). Through the other members, which must have
# a quorum, it removes this member's old ID and adds it again (a new ID),
# moves {{.DataDir}} aside (kept, never deleted), and starts etcd with
# initial-cluster-state "existing", so that it copies the cluster's data
# from the others; then it waits until this member is healthy and has
# caught up. It refuses when this member holds data and is healthy,
# unless --force. https://etcd.io/docs/v3.5/op-guide/runtime-configuration/
set -euo pipefail
log() { echo "pgha-etcd-rejoin: $*"; }
die() {
	log "$*" >&2
	exit 1
}
name={{.Name}} peer={{.PeerURL}} others={{.Others}}
ctl() { etcdctl --cacert {{.CAFile}} --cert {{.CertFile}} --key {{.KeyFile}} --dial-timeout 3s --command-timeout 10s "$@"; }
here() { ctl --endpoints {{.LocalURL}} "$@"; }
there() { ctl --endpoints "$others" "$@"; }
has_data() { [[ -n $(find {{.DataDir}} -mindepth 1 -print -quit 2>/dev/null) ]]; }
# retry CMD...: etcd refuses a membership change for a few seconds after an
# election ("unhealthy cluster", its strict reconfiguration check).
retry() {
	local out i
	for ((i = 1; ; i++)); do
		out=$("$@" 2>&1) && echo "$out" && return 0
		if [[ $out != *"unhealthy cluster"* ]] || ((i == 15)); then
			echo "$out" >&2
			return 1
		fi
		sleep 2
	done
}
case ${1:-} in
'' | --force) ;;
*) die "usage: {{.Script}} [--force]" ;;
esac

if [[ ${1:-} != --force ]] && has_data && here endpoint health >/dev/null 2>&1; then
	die "$name holds its data and is healthy: nothing to replace (--force replaces it anyway)"
fi
# The others must have a quorum: the cluster's, without this member.
health=$(there endpoint health 2>&1) || true
healthy=$(grep -c ' is healthy' <<<"$health") || true
if ((healthy < {{.Quorum}})); then
	echo "$health" | grep -E ' is (un)?healthy' >&2 || true
	die "$healthy of the other members ($others) are healthy, {{.Quorum}} are needed (a quorum): nothing was changed"
fi

# A member that never started has no name: match its peer URL too.
members=$(there member list) || die "the others did not list the members: nothing was changed"
systemctl stop {{.Unit}}
old=$(awk -F', ' -v n="$name" -v p="$peer" '$3 == n || $4 == p { print $1 }' <<<"$members")
for id in $old; do
	retry there member remove "$id" >/dev/null
	log "removed member $id"
done
new=$(retry there member add "$name" --peer-urls="$peer" | sed -n 's/^Member \([0-9a-f]*\) added.*/\1/p')
log "added $name ($peer) as member $new"
if has_data; then
	aside={{.DataDir}}.lost-$(date -u +%Y%m%dT%H%M%SZ)
	mv {{.DataDir}} "$aside"
	log "the old data directory is kept in $aside"
fi
sed -i 's/^initial-cluster-state: new$/initial-cluster-state: existing/' {{.Config}}
grep -qx 'initial-cluster-state: existing' {{.Config}} || die "{{.Config}} has no initial-cluster-state to set"
systemctl reset-failed {{.Unit}} 2>/dev/null || true
systemctl start {{.Unit}}

# Caught up: this member has applied what the others had committed once it
# was healthy.
for ((i = 0; ; i++)); do
	if here endpoint health >/dev/null 2>&1; then
		target=${target:-$(there endpoint status | awk -F', ' '$8 > m { m = $8 } END { print m + 0 }')}
		applied=$(here endpoint status | awk -F', ' '{ print $9 + 0 }')
		((applied < target)) || break
	fi
	((i < 90)) || die "$name is not healthy and caught up after 3 minutes: journalctl -u {{.Unit}}"
	sleep 2
done
log "$name is member $new, healthy, raft index $applied applied (the others had $target)"
