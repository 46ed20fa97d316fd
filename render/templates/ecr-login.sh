#!/bin/sh
# {{.Header}}
#
# Logs podman in to the registry of image $1 when it is an ECR registry
# (ACCOUNT.dkr.ecr.REGION.amazonaws.com/...), with the instance role's
# credentials; other registries need no login. ECR tokens last 12 hours, so
# pgha-app.service runs this before every start.
set -eu
registry=${1%%/*}
case $registry in
*.dkr.ecr.*.amazonaws.com) ;;
*) exit 0 ;;
esac
region=$(echo "$registry" | cut -d. -f4)
aws ecr get-login-password --region "$region" |
	podman login --username AWS --password-stdin "$registry" >/dev/null
