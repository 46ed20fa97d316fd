#!/bin/bash
# {{.Header}}
# shellcheck disable=SC2034 # ca_changed: only some roles' reload steps read it
#
# Installs this node's TLS files from Secrets Manager: the cluster CA's
# certificates ({{.TrustSecret}}) as {{.CAFile}}{{if .NodeSecret}}, and
# the node's own certificate and key ({{.NodeSecret}}) as {{.CertFile}}
# and {{.KeyFile}}{{end}}. The boot runs it before any daemon starts
# (with --no-reload); pgha-tls-refresh.timer runs it every day, and an
# operator after a rotation (SSM Run Command: {{.Script}}). It replaces a
# file only when its content changed, and then makes the daemons load it
# without a restart. It never prints a key.
set -euo pipefail
umask 077
log() { echo "pgha-tls: $*"; }
read_secret() {
	aws secretsmanager get-secret-value --region {{.Region}} --secret-id "$1" --query SecretString --output text
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
read_secret {{.TrustSecret}} >"$tmp/bundle.pem"
openssl x509 -in "$tmp/bundle.pem" -noout
cp "$tmp/bundle.pem" "$tmp/ca.crt"
{{- if .NodeSecret}}
read_secret {{.NodeSecret}} >"$tmp/node.pem"
openssl x509 -in "$tmp/node.pem" -out "$tmp/node.crt"
openssl pkey -in "$tmp/node.pem" -out "$tmp/node.key"
openssl verify -CAfile "$tmp/ca.crt" "$tmp/node.crt" >/dev/null
# The key must be the certificate's.
if ! cmp -s <(openssl x509 -in "$tmp/node.crt" -noout -pubkey) <(openssl pkey -in "$tmp/node.key" -pubout); then
	log "the key in {{.NodeSecret}} is not its certificate's"
	exit 1
fi
{{- end}}
changed='' ca_changed=''
# install_file NAME MODE OWNER
install_file() {
	cmp -s "$tmp/$1" "{{.Dir}}/$1" && return 0
	install -m "$2" -o "$3" -g "$3" "$tmp/$1" "{{.Dir}}/$1.new"
	mv "{{.Dir}}/$1.new" "{{.Dir}}/$1"
	log "installed a new {{.Dir}}/$1"
	changed=1
	[[ $1 != ca.crt ]] || ca_changed=1
}
install -d -m 0755 {{.Dir}}
install_file ca.crt 0644 root
{{- if .NodeSecret}}
install_file node.crt 0644 root
install_file node.key 0600 {{.KeyOwner}}
{{- end}}
if [[ -z $changed || ${1:-} == --no-reload ]]; then
	exit 0
fi
{{- range .Reload}}
{{.}}
{{- end}}
