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
// # Daemons
//
// render.Files and render.Dirs give each node its files at their EC2 paths;
// the local cluster writes them under <dir>/nodes/<node>/ at those same
// paths. Each daemon of render.Services runs in its node's namespace and in
// a private mount namespace where the node's directories are bind-mounted
// over the shared root filesystem, with /proc, /dev, a /dev/shm of its own
// and /sys; it is then chrooted and runs as its service user (numeric ids
// from the root filesystem's /etc/passwd) with a clean environment plus the
// variables of its EnvFile. Those mounts vanish with the daemon. The app, a
// container on EC2, runs here as a static binary in its node's namespace on
// the host's filesystem, with render.AppEnv.
//
// # Health checker
//
// Up also starts, in each region with an app, the health checker the Lambda
// runs on AWS (healthcheck.Checker) on a timer: `pgha-local checker`
// (RunChecker), a detached process in the root namespace, logging each
// check to <dir>/logs/checker-<region>.log. Its restarter is RestartApp in
// place of SSM Run Command, its memory of restarts a
// healthcheck.MemoryStore. The app starts with the database daemons, before
// the cluster is ready; if it gives up, the checker restarts it once the
// cluster is.
//
// State (pids), secrets (random passwords, 0600), node data and logs live
// in one directory, so Open, Status, Fault and Down work from another
// process than Up.
package local
