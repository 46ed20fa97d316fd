// Package render turns a cluster plan and one of its nodes into the files
// that node runs: patroni.yml and its post-bootstrap script, the etcd
// configuration, haproxy.cfg, the systemd units, and the boot script EC2
// runs as user data.
//
// Every function is pure: no I/O, no clock, the same bytes for the same
// plan. Two runners use them. The CDK constructs put BootScript's output in
// the instances' user data; the local cluster writes Files into each node's
// private view of a Debian 13 root filesystem at the same absolute paths and
// runs the same Services' commands without systemd. So the files the tests
// exercise here are byte for byte the ones EC2 gets.
//
// No password ever appears in a rendered file. Nodes read them from Secrets
// Manager at boot into root-only files (EnvFile, AppPasswordFile); the
// daemons get them from their environment (see SecretEnv).
package render
