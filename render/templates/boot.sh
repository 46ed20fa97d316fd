#!/bin/bash
# {{.Header}}
#
# Boot script of {{.Node.Name}} ({{.Node.Role}}, {{.Node.Region}}) in cluster {{.Plan.Config.Name}}.
# EC2 runs it once, as root, on first boot; its output goes to
# /var/log/cloud-init-output.log. It never prints a password (no set -x).
set -euo pipefail
shopt -s inherit_errexit
export DEBIAN_FRONTEND=noninteractive
log() { echo "pgha-boot: $*"; }

log "installing {{.Packages}}"
apt-get update -q
{{.AptInstall}} {{.Packages}}
{{- if .Postgres}}

# Patroni runs PostgreSQL: remove the cluster Debian creates and keep its
# units from starting one.
pg_dropcluster --stop 17 main 2>/dev/null || true
systemctl disable --now postgresql.service patroni.service

# The data volume: on Nitro instances EBS volumes are NVMe disks whose
# names follow no order, so take the disk that does not hold /, waiting
# for it to be attached. Format it only if it has no filesystem yet.
root_disk=$(lsblk -ndpo PKNAME "$(findmnt -nvo SOURCE /)")
data_disk=
for _ in $(seq 60); do
	data_disk=$(lsblk -dnpo NAME,TYPE | awk -v root="$root_disk" '$2 == "disk" && $1 != root { print $1; exit }')
	[[ -n $data_disk ]] && break
	sleep 5
done
[[ -n $data_disk ]] || { log "no data volume attached after 5 minutes" >&2; exit 1; }
blkid "$data_disk" >/dev/null || mkfs.ext4 -q -L pgha-data "$data_disk"
uuid=$(blkid -s UUID -o value "$data_disk")
grep -q "^UUID=$uuid " /etc/fstab ||
	echo "UUID=$uuid {{.DataMount}} ext4 defaults,noatime,nofail 0 2" >>/etc/fstab
systemctl daemon-reload
mountpoint -q {{.DataMount}} || mount {{.DataMount}}
{{- end}}
{{- if .Etcd}}

# pgha-etcd.service runs etcd with pgha's configuration instead.
systemctl disable --now etcd.service
{{- end}}
{{- range .Dirs}}
install -d -m {{printf "%04o" .Mode}} -o {{.Owner}} -g {{.Owner}} {{.Path}}
{{- end}}
{{- if or .Secrets .App}}

# Passwords, from Secrets Manager by name. A password must be a plain
# string that an environment file holds as is. The primary region's stack
# creates the secrets and deploys last, so another region's replica may
# not exist yet: wait for it (up to an hour).
secret() {
	local value tries=0
	until value=$(aws secretsmanager get-secret-value --region {{.Node.Region}} --secret-id "$1" --query SecretString --output text 2>/dev/null); do
		tries=$((tries + 1))
		if ((tries >= 120)); then
			log "secret $1 is still not readable in {{.Node.Region}} after an hour" >&2
			return 1
		fi
		((tries % 12 == 1)) && log "waiting for secret $1 in {{.Node.Region}}"
		sleep 30
	done
	case $value in
	'' | *[!A-Za-z0-9._~+/=@:,-]*)
		log "secret $1 is empty or has characters other than letters, digits and ._~+/=@:,-" >&2
		return 1
		;;
	esac
	printf '%s' "$value"
}
{{- end}}
{{- if .Secrets}}
umask 077
{
{{- range .Secrets}}
	value=$(secret {{.Name}})
	printf '%s=%s\n' {{.Var}} "$value"
{{- end}}
} >{{.EnvFile}}.new
unset value
mv {{.EnvFile}}.new {{.EnvFile}}
umask 022
{{- end}}
{{- if .App}}

# The app container runs as uid {{.AppUID}}; only it may read its password.
umask 077
value=$(secret {{.AppSecret}})
printf '%s' "$value" >{{.AppPasswordFile}}
unset value
umask 022
chown {{.AppUID}}:{{.AppUID}} {{.AppPasswordFile}}
chmod 0400 {{.AppPasswordFile}}
systemctl enable --now docker.service
{{- end}}

# pgha's files, byte for byte.
put() {
	install -d -m 0755 "$(dirname "$1")"
	cat >"$1"
	chmod "$2" "$1"
	chown "$3:" "$1"
}
{{- range .Files}}
put {{.Path}} {{printf "%04o" .Mode}} {{.Owner}} <<'{{$.EOF}}'
{{.Content}}{{$.EOF}}
{{- end}}
{{- if .Postgres}}

# Patroni's watchdog (its udev rule is above). Without the module Patroni
# runs without a watchdog (mode automatic).
if modprobe softdog; then
	udevadm trigger --subsystem-match=misc --action=change
	udevadm settle
else
	log "no softdog module: Patroni runs without a watchdog"
fi
{{- end}}

systemctl daemon-reload
{{- range .Services}}
{{- if .Packaged}}
systemctl enable {{.Unit}}
systemctl restart {{.Unit}}
{{- else}}
systemctl enable --now {{.Unit}}
{{- end}}
{{- end}}
log "{{.Node.Name}} is up"
