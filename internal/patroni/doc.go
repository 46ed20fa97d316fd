// Package patroni is the typed model of Patroni's REST API answers that
// pgha reads: GET /cluster (Cluster, Member, Lag), the cluster as the DCS
// holds it, and GET /patroni (Status), a node's own view of itself.
//
// The predicates on them are the one statement of who leads and what
// "ready" and "whole" mean, shared by the health checker (healthcheck), the
// local cluster (local) and the failover drills (drill):
//
//   - Member.HoldsLeaderKey: the member holds the leader key;
//   - Member.LeaderRunning and Cluster.Leader: it holds the key and runs;
//   - Ready: the health checker's ready (the leader also says itself, on
//     GET /patroni, that it runs as the primary);
//   - Cluster.Whole: the drills' whole cluster.
//
// The rules are tested on answers recorded from Patroni 4.0.7 (testdata).
// The package is pure: it decodes and decides, and asks nothing over the
// network.
package patroni
