#!/bin/bash
# {{.Header}}
#
# Runs the hello API's container: pgha-app.service's ExecStart. The image
# is not in this file (nor in the user data): it is the SSM parameter
# {{.Parameter}}, read at every start, so that deploying a new image
# changes a parameter and restarts this unit, and never the node. The last
# image read is kept: the app still starts when Parameter Store or the
# registry cannot be reached.
set -euo pipefail
log() { echo "pgha-app: $*" >&2; }
last={{.LastImage}}
if image=$(aws ssm get-parameter --region {{.Region}} --name {{.Parameter}} --query Parameter.Value --output text); then
	install -d -m 0755 "$(dirname "$last")"
	printf '%s\n' "$image" >"$last.new"
	mv "$last.new" "$last"
elif [[ -s $last ]]; then
	image=$(<"$last")
	log "cannot read {{.Parameter}}: starting the last image, $image"
else
	log "cannot read {{.Parameter}} and no image was ever read"
	exit 1
fi
# ECR tokens last 12 hours: log in again on every start. An image already
# pulled still starts if the registry is unreachable.
{{.ECRLogin}} "$image" || log "registry login failed"
podman pull --quiet "$image" >/dev/null || log "pull of $image failed"
podman rm --force {{.Container}} >/dev/null 2>&1 || true
exec {{.Run}} "$image"
