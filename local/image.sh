#!/bin/bash
# Builds the local cluster's node image: a Debian 13 root like the EC2 AMI
# (debootstrap's minbase plus AMI_PACKAGES), with every role's packages
# already installed by the boot's own apt-get command (APT_INSTALL), so that
# a node's boot runs its apt-get and finds nothing to do. Then the few
# settings that make it a local image, each one listed in the README's
# "Local and EC2" table. Run by local.EnsureImage as root:
#
#	image.sh OUT MIRROR ARCHIVES
#
# with AMI_SOURCES, AMI_PACKAGES, ROLE_PACKAGES, LOCAL_PACKAGES and
# APT_INSTALL in the
# environment. It builds into OUT.tmp; the caller renames it.
set -euo pipefail
out=$1 mirror=$2 archives=$3
tmp=$out.tmp
log() { echo "pgha-image: $*"; }

cleanup() {
	for m in "$tmp/var/cache/apt/archives" "$tmp/dev" "$tmp/proc"; do
		mountpoint -q "$m" && umount -l "$m"
	done
	return 0
}
trap cleanup EXIT
cleanup
rm -rf "$tmp"
mkdir -p "$archives"

log "debootstrap trixie (minbase)"
debootstrap --variant=minbase trixie "$tmp" "$mirror" >"$tmp.log" 2>&1 || {
	tail -40 "$tmp.log"
	exit 1
}
rm -f "$tmp/etc/apt/sources.list"
# The AMI's sources (render.AMISources).
printf '%s' "$AMI_SOURCES" >"$tmp/etc/apt/sources.list.d/debian.sources"
# No service starts while packages install.
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod 0755 "$tmp/usr/sbin/policy-rc.d"
rm -f "$tmp/etc/resolv.conf"
cp /etc/resolv.conf "$tmp/etc/resolv.conf"
mount -t proc proc "$tmp/proc"
mount --bind /dev "$tmp/dev"
mount --bind "$archives" "$tmp/var/cache/apt/archives"

in_root() {
	chroot "$tmp" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		DEBIAN_FRONTEND=noninteractive HOME=/root LC_ALL=C "$@"
}
in_root apt-get update -q >/dev/null
for set in AMI_PACKAGES ROLE_PACKAGES LOCAL_PACKAGES; do
	log "installing $set: ${!set}"
	# shellcheck disable=SC2086 # word splitting of the lists is meant
	in_root $APT_INSTALL -o DPkg::Options::=--force-unsafe-io ${!set} >"$tmp.log" 2>&1 || {
		tail -40 "$tmp.log"
		exit 1
	}
done
in_root apt-get autoclean -q >/dev/null

# Packaged daemons stay off until a node's boot enables its own: on EC2 a
# node installs only its role's packages, here every role's are in the one
# image.
for unit in postgresql.service patroni.service pgbackrest.service etcd.service haproxy.service docker-registry.service; do
	in_root systemctl disable "$unit" >/dev/null 2>&1 || true
done
rm -f "$tmp/usr/sbin/policy-rc.d"

# The boot's apt-get update then fetches nothing (nodes have no route to
# Debian's mirror) and its apt-get install finds every package installed.
rm -f "$tmp"/etc/apt/sources.list.d/*
find "$tmp/var/lib/apt/lists" -type f -delete
: >"$tmp/etc/resolv.conf"
# shellcheck disable=SC2086
if ! in_root $APT_INSTALL -s $ROLE_PACKAGES | grep -q '^0 upgraded, 0 newly installed'; then
	log "the image does not satisfy every role's packages offline:"
	# shellcheck disable=SC2086
	in_root $APT_INSTALL -s $ROLE_PACKAGES | tail -20
	exit 1
fi

# cloud-init reads the user data from a NoCloud seed the local cluster
# writes into each node (/var/lib/cloud/seed/nocloud), not from EC2's
# metadata service, and leaves the network to the host.
cat >"$tmp/etc/cloud/cloud.cfg.d/90-pgha-local.cfg" <<'EOF'
# pgha local image: the user data comes from the NoCloud seed.
datasource_list: [ NoCloud ]
network: {config: disabled}
EOF
# journald copies every unit's messages to the console, which is the
# node's log file on the host (EC2: the serial console).
mkdir -p "$tmp/etc/systemd/journald.conf.d"
cat >"$tmp/etc/systemd/journald.conf.d/90-pgha-local.conf" <<'EOF'
[Journal]
ForwardToConsole=yes
MaxLevelConsole=info
EOF
# Containers in a node container: vfs storage (no fuse for overlay on
# overlay), no cgroups (none is delegated), the node's own network, no
# session keyring (systemd-nspawn's seccomp filter refuses keyctl).
mkdir -p "$tmp/etc/containers"
cat >"$tmp/etc/containers/storage.conf" <<'EOF'
[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
EOF
cat >"$tmp/etc/containers/containers.conf" <<'EOF'
[containers]
cgroups = "disabled"
netns = "host"
keyring = false
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
# udev does not run in a container (sysfs is read-only), and systemd-nspawn
# mounts the root: udev's credentials loader and the root's remount fail
# there now and then, which leaves the system "degraded".
for unit in systemd-udev-load-credentials.service systemd-remount-fs.service; do
	ln -sf /dev/null "$tmp/etc/systemd/system/$unit"
done
# Every node gets its own machine id at its first boot.
: >"$tmp/etc/machine-id"
rm -f "$tmp/var/lib/dbus/machine-id"
