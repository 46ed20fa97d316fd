#!/bin/bash
# {{.Header}}
#
# Boot script of {{.Node.Name}} ({{.Node.Role}}, {{.Node.Region}}) in cluster {{.Plan.Config.Name}}.
# EC2 runs it once, as root, on the instance's first boot (cloud-init's
# scripts-user, once per instance); its output goes to
# /var/log/cloud-init-output.log and to the serial console (aws ec2
# get-console-output). {{.BootUnit}} runs it again at a later boot if it
# failed or changed, and it converges when run again. Every step that needs
# the network retries, waiting at most a minute between tries. It never
# prints a password (no set -x).
#
# It reports how it went in the SSM parameter {{.StatusParameter}}
# ("booting", "ok", "degraded: ..." or "failed: ..."), which the health
# checker turns into metrics and alarms.
set -euo pipefail
shopt -s inherit_errexit
export DEBIAN_FRONTEND=noninteractive
log() { echo "pgha-boot: $*"; }

report() {
	aws ssm put-parameter --region {{.StatusRegion}} --name {{.StatusParameter}} --type String --overwrite \
		--value "$1 $(date -u +%Y-%m-%dT%H:%M:%SZ)" >/dev/null 2>&1 ||
		log "could not report \"$1\" to {{.StatusParameter}}"
}
on_exit() {
	local rc=$?
	if ((rc != 0)); then
		log "FAILED (exit $rc): see the lines above"
		report "failed: exit $rc"
	fi
}
trap on_exit EXIT

# retry LIMIT CMD...: runs CMD until it succeeds, waiting 2 s, then 4, 8, ...
# and at most 60 s between tries; gives up after LIMIT seconds (0: never),
# or at once when CMD exits with status 199: a failure that trying again
# cannot fix.
retry() {
	local limit=$1 delay=2 start=$SECONDS tries=1 rc
	shift
	until "$@"; do
		rc=$?
		if ((rc == 199)); then
			log "giving up, for good: $*"
			return 1
		fi
		if ((limit > 0 && SECONDS - start >= limit)); then
			log "giving up after $((SECONDS - start)) s and $tries tries: $*"
			return 1
		fi
		((tries % 10 == 1)) && log "retrying every ${delay} s or less: $*"
		sleep "$delay"
		delay=$((delay * 2 > 60 ? 60 : delay * 2))
		tries=$((tries + 1))
	done
}

# Run this script again at a later boot when its last run failed, or when
# the user data changed since the last run that succeeded (CloudFormation
# stops and starts an instance whose user data changed; cloud-init does not
# run the new one: "User data runs only at instance launch"). The current
# user data comes from the instance metadata service, IMDSv2, compressed
# (render.UserData).
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html
install -d -m 0755 /usr/local/lib/pgha /var/lib/pgha
cat >{{.BootAgain}}.new <<'{{.EOF}}'
#!/bin/bash
# {{.Header}}
set -euo pipefail
imds=http://169.254.169.254/latest
token=$(curl -fsS --retry 10 --retry-connrefused -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$imds/api/token")
curl -fsS --retry 10 -H "X-aws-ec2-metadata-token: $token" "$imds/user-data" | gzip -dcf >{{.UserData}}
if sha256sum <{{.UserData}} | cmp -s - {{.BootDone}}; then
	exit 0
fi
exec /bin/bash {{.UserData}}
{{.EOF}}
chmod 0700 {{.BootAgain}}.new
mv {{.BootAgain}}.new {{.BootAgain}}
cat >/etc/systemd/system/{{.BootUnit}} <<'{{.EOF}}'
# {{.Header}}
[Unit]
Description=pgha boot of {{.Node.Name}}, again, if its user data changed or its last run failed
Wants=network-online.target
After=network-online.target cloud-final.service

[Service]
Type=oneshot
ExecStart={{.BootAgain}}
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
{{.EOF}}
systemctl daemon-reload
systemctl enable {{.BootUnit}}
rm -f {{.BootDone}}

# The network: a private node reaches the internet through its region's
# NAT gateway, whose route may come up after the instance does. Any HTTP
# answer from the regional S3 endpoint will do.
s3=https://s3.{{.Node.Region}}.amazonaws.com
retry 0 curl -sS -o /dev/null --max-time 10 "$s3/"

# The SSM agent first, before anything else can fail: Session Manager is
# the only way in, and Run Command restarts the app. Debian's AMIs and
# archive do not have it; AWS publishes it in a bucket of each region.
# https://docs.aws.amazon.com/systems-manager/latest/userguide/agent-install-deb.html
ssm_agent() {
	systemctl is-active --quiet amazon-ssm-agent.service && return 0
	if ! dpkg-query -W -f '${Status}' amazon-ssm-agent 2>/dev/null | grep -q 'install ok installed'; then
		local url code
		url=$s3/amazon-ssm-{{.Node.Region}}/latest/debian_$(dpkg --print-architecture)/amazon-ssm-agent.deb
		code=$(curl -sS --max-time 300 -o /var/lib/pgha/amazon-ssm-agent.deb -w '%{http_code}' "$url") || return 1
		case $code in
		200) ;;
		4??)
			# The bucket answered: the package is not there for this
			# region or architecture, and will not be.
			log "no SSM agent at $url: HTTP $code"
			return 199
			;;
		*) return 1 ;;
		esac
		dpkg -i /var/lib/pgha/amazon-ssm-agent.deb
	fi
	systemctl enable --now amazon-ssm-agent.service
	systemctl is-active --quiet amazon-ssm-agent.service
}
degraded=
if retry 900 ssm_agent; then
	log "the SSM agent is running"
else
	log "the SSM agent is NOT running: Session Manager and Run Command cannot reach this node"
	degraded="no SSM agent"
fi
report booting

log "installing {{.Packages}}"
# Another apt (cloud-init's, unattended-upgrades) may hold the lock.
retry 0 apt-get -q -o DPkg::Lock::Timeout=300 update
retry 0 {{.AptInstall}} -o DPkg::Lock::Timeout=300 {{.Packages}}
{{- if .Postgres}}

# Patroni runs PostgreSQL: remove the cluster Debian creates and keep its
# units from starting one.
pg_dropcluster --stop 17 main 2>/dev/null || true
systemctl disable --now postgresql.service patroni.service

# The data volume: on Nitro instances EBS volumes are NVMe disks whose
# names follow no order, so take the disk that does not hold /, waiting
# for it to be attached. Format it only if it has no filesystem yet.
# A volume already mounted there (a second run; the local cluster's node
# volume) is kept as it is.
if mountpoint -q {{.DataMount}}; then
	log "{{.DataMount}} is already mounted: keeping it as the data volume"
else
	root_disk=$(lsblk -ndpo PKNAME "$(findmnt -nvo SOURCE /)")
	data_disk() {
		data_disk=$(lsblk -dnpo NAME,TYPE | awk -v root="$root_disk" '$2 == "disk" && $1 != root { print $1; exit }')
		[[ -n $data_disk ]]
	}
	retry 0 data_disk
	blkid "$data_disk" >/dev/null || mkfs.ext4 -q -L pgha-data "$data_disk"
	uuid=$(blkid -s UUID -o value "$data_disk")
	grep -q "^UUID=$uuid " /etc/fstab ||
		echo "UUID=$uuid {{.DataMount}} ext4 defaults,noatime,nofail 0 2" >>/etc/fstab
	systemctl daemon-reload
	mount {{.DataMount}}
fi
{{- end}}
{{- if .Etcd}}

# pgha-etcd.service runs etcd with pgha's configuration instead.
systemctl disable --now etcd.service
{{- end}}
{{- range .Dirs}}
install -d -m {{printf "%04o" .Mode}} -o {{.Owner}} -g {{.Owner}} {{.Path}}
{{- end}}
{{- if or .Postgres .HAProxy .App}}

# Passwords, from Secrets Manager by name. A password must be a plain
# string that a YAML quoted string holds as is. The primary region's stack
# creates the secrets and deploys last, so another region's replica may
# not exist yet: wait for it.
read_secret() {
	aws secretsmanager get-secret-value --region {{.Node.Region}} --secret-id "$1" --query SecretString --output text 2>/dev/null
}
secret() {
	local value
	value=$(retry 0 read_secret "$1")
	case $value in
	'' | *[!A-Za-z0-9._~+/=@:,-]*)
		log "secret $1 is empty or has characters other than letters, digits and ._~+/=@:,-" >&2
		return 1
		;;
	esac
	printf '%s' "$value"
}
{{- end}}
{{- if .Postgres}}

# Patroni's passwords, in a file Patroni merges over its configuration,
# readable only by postgres: none is in Patroni's environment, and so
# none in PostgreSQL's (the app's and the health checker's passwords are
# read only by the post-bootstrap script).
umask 077
superuser=$(secret {{.SuperSecret}})
replication=$(secret {{.ReplSecret}})
api=$(secret {{.APISecret}})
printf "{{.PatroniSecretsFormat}}" \
	"{{.Header}}" "$superuser" "$replication" "$api" >{{.PatroniSecrets}}.new
unset superuser replication api
umask 022
chown postgres:postgres {{.PatroniSecrets}}.new
chmod 0600 {{.PatroniSecrets}}.new
mv {{.PatroniSecrets}}.new {{.PatroniSecrets}}
rm -f /etc/pgha/patroni.env

# pgBackRest's buckets are named after the account (cluster.BackupBucket).
account=$(retry 0 aws sts get-caller-identity --region {{.Node.Region}} --query Account --output text)
printf "{{.BucketsFormat}}" "{{.Header}}"{{range .BucketRepos}} "$account"{{end}} >{{.BucketsFile}}.new
mv {{.BucketsFile}}.new {{.BucketsFile}}
{{- end}}
{{- if .HAProxy}}

# The stats page's user, with the SHA-512 crypt hash of its password.
umask 077
install -d -m 0755 "$(dirname {{.StatsUsers}})"
hash=$(secret {{.StatsSecret}} | openssl passwd -6 -stdin)
printf '# %s\nuserlist {{.Userlist}}\n    user {{.StatsUser}} password %s\n' "{{.Header}}" "$hash" >{{.StatsUsers}}.new
unset hash
mv {{.StatsUsers}}.new {{.StatsUsers}}
umask 022
{{- end}}
{{- if .App}}

# The app container runs as uid {{.AppUID}}; only it may read its password.
umask 077
value=$(secret {{.AppSecret}})
printf '%s' "$value" >{{.AppPasswordFile}}.new
unset value
umask 022
chown {{.AppUID}}:{{.AppUID}} {{.AppPasswordFile}}.new
chmod 0400 {{.AppPasswordFile}}.new
mv {{.AppPasswordFile}}.new {{.AppPasswordFile}}
{{- end}}

# pgha's files, byte for byte.
put() {
	install -d -m 0755 "$(dirname "$1")"
	cat >"$1.new"
	chmod "$2" "$1.new"
	chown "$3:" "$1.new"
	mv "$1.new" "$1"
}
{{- range .Files}}
put {{.Path}} {{printf "%04o" .Mode}} {{.Owner}} <<'{{$.EOF}}'
{{.Content}}{{$.EOF}}
{{- end}}
{{- if .Fetched}}

# Files that are SSM parameters, so that changing the cluster's tunable
# settings changes a parameter and not this script.
read_parameter() {
	aws ssm get-parameter --region {{.Node.Region}} --name "$1" --query Parameter.Value --output text
}
{{- range .Fetched}}
retry 0 read_parameter {{.Parameter}} | put {{.Path}} {{printf "%04o" .Mode}} {{.Owner}}
{{- end}}
{{- end}}


# TLS: the cluster CA's certificate{{if or .Postgres .Etcd}}, and this node's certificate and key{{end}}.
# The primary region's stack issues them (and deploys last): wait for them.
retry 0 {{.TLSRefresh}} --no-reload
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
systemctl enable {{.Unit}}
systemctl is-active --quiet {{.Unit}} || systemctl start {{.Unit}}
{{- end}}
{{- end}}
# Renewed certificates are installed every day.
systemctl enable --now {{.TLSTimer}}
{{- range .Timers}}
systemctl enable --now {{.}}
{{- end}}
sha256sum <"$0" >{{.BootDone}}
if [[ -n $degraded ]]; then
	report "degraded: $degraded"
else
	report ok
fi
log "{{.Node.Name}} is up${degraded:+, degraded: $degraded}"
