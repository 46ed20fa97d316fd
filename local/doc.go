// Package local runs a pgha cluster on one Linux machine with the real
// daemons: PostgreSQL 17, Patroni 4.0, etcd 3.5 and HAProxy 3.0 from a
// Debian 13 root filesystem (the packages EC2 installs), and the hello API.
// It is the way to try pgha without an AWS account, and the test bed of the
// end-to-end tests and the failover drills.
//
// # Topology
//
// Every node of the plan (cluster.NewPlan) is a network namespace
// "pgha-<node>" whose eth0 has exactly the private IP the node gets on EC2,
// in its /24 subnet, with the subnet's first address as default gateway.
// Each region has a router namespace "pgha-r-<region>" holding one bridge per
// subnet (s0-s2 public, s3-s5 private) with the gateway address; a node's
// veth ("v-<id>" on the router side, after the node's region-local ID) is a
// port of its subnet's bridge.
// A core router namespace "pgha-core" joins the region routers, each over a
// /30 of a link net outside every region CIDR (10.255.255.0/24 unless that
// overlaps one), and the root namespace over the first /30 (veth "pgha0"):
// the root namespace routes each region CIDR through the core router, so
// every node is reachable from it.
//
//	root ── pgha0 ── pgha-core ─┬─ r0 ── pgha-r-eu-west-3 ─ s3 ─ v-pg1 ── pgha-euw3-pg1 (10.11.3.10)
//	                            │                          └ s0 ─ v-app1 ─ pgha-euw3-app1 (10.11.0.40)
//	                            └─ r1 ── pgha-r-eu-west-1 ─ s3 ─ v-pg1 ── pgha-euw1-pg1 (10.12.3.10)
//
// Faults act on the router side: Isolate sets a node's v-<id>, or a
// region's r<i> on the core router, down.
//
// # Nodes
//
// Every node is a Debian 13 system with systemd as PID 1, booted by
// systemd-nspawn in the node's network namespace on its own overlay of one
// shared, read-only node image (EnsureRootFS: debootstrap, the AMI's
// packages and every role's, installed with the boot's own apt-get flags).
// The overlay's upper directory is the node's disk, a PostgreSQL node's
// data volume a tmpfs of VolumeSize mounted at render.DataMount (it can
// fill up: FillVolume); both outlive a crash or a reboot of the node,
// until Down.
//
// Before the first boot, the local cluster writes into the node's disk
// what EC2 gives an instance: cloud-init's NoCloud seed with the node's
// user data, render.UserData byte for byte (the bytes the CDK puts in
// the template), its hostname, and, the local image's own, an /etc/hosts
// that sends AWS's endpoint names to the AWS side and trust in the CA that
// serves them. cloud-init runs the user data once per instance, as on
// EC2; everything after that (apt-get, the secrets, the units, podman
// pulling and running the app's image) is the boot script's and systemd's.
//
// The AWS side runs in a namespace of its own, pgha-aws, joined to the
// core router: the instance metadata service (IMDS, IMDSv2 only) at
// 169.254.169.254, Debian's moto server (SSM Parameter Store, Secrets
// Manager, ECR, S3 on one HTTPS port) and Debian's docker-registry, to
// which Up pushes the app's image (BuildAppImage) under the primary
// region's ECR name. Up creates in it what the CDK stacks create on AWS:
// the secrets and the parameters the boot reads.
//
// # Health checker
//
// Up also starts, in each region with an app, the health checker the Lambda
// runs on AWS (healthcheck.Checker) on a timer: `pgha-local checker`
// (RunChecker), a detached process in the root namespace, logging each
// check to <dir>/logs/checker-<region>.log. Its restarter, RestartApp,
// runs render.AppRestartCommand (what SSM Run Command sends) in the app
// node; its memory of restarts is a healthcheck.MemoryStore. The app
// starts with the node, before the cluster is ready; if it gives up, the
// checker restarts it once the cluster is.
//
// Each node's console (its boot, and every unit's messages, which
// journald copies there) is <dir>/logs/<node>.log. State (pids), secrets
// (random passwords, 0600), node disks and logs live in one directory, so Open, Status, Fault and Down work from another
// process than Up.
package local
