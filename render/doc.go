// Package render turns a cluster plan and one of its nodes into the files
// that node runs: patroni.yml and its post-bootstrap script, the etcd
// configuration, haproxy.cfg, the systemd units, and the boot script EC2
// runs as user data.
//
// Every function is pure: no I/O, no clock, the same bytes for the same
// plan. The CDK constructs put BootScript's output in the instances' user
// data, and the local cluster boots its nodes from the same bytes.
//
// No password or key ever appears in a rendered file. Nodes read them from
// Secrets Manager at boot into files only their daemon's user can read
// (PatroniSecretsConfig, AppPasswordFile, HAProxyStatsUsers, KeyFile);
// none is in a process's environment.
package render
