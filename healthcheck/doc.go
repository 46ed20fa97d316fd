// Package healthcheck watches a pgha cluster and restarts the app when the
// cluster has become ready and the app has not: the step the original design
// did by hand (watch `patronictl list`, then replace the app instance).
//
// One check (Checker.Check) does four things:
//
//  1. Observe: ask every PostgreSQL node's Patroni REST API at once
//     (GET /patroni for the node's own state, GET /cluster for the DCS view),
//     each node bounded by its own timeout, and Reconcile the answers into one
//     View: the leader (name, region, timeline), each member's state and
//     replication lag, the members that did not answer.
//  2. Decide whether the cluster is ready: a leader that is running, says
//     itself it is the primary, and accepts writes through HAProxy
//     (a WriteChecker: pg_is_in_recovery() is false).
//  3. When it is ready, probe each app instance's GET /readyz and, for an
//     instance that is not ready, restart it through a Restarter, at most
//     once per backoff per instance (the memory of the last restart lives in
//     a Store, outside the process).
//  4. Report: the Report carries everything for one structured log line
//     (Report.LogAttrs) and one CloudWatch Embedded Metric Format document
//     (WriteEMF).
//
// The decision is a pure function (Decide, with ClusterReady) of what was
// observed, the time and the backoff, so it is tested with tables. The same
// Checker runs in the Lambda (lambda/, with SSM Run Command and SSM Parameter
// Store behind Restarter and Store) and in the local cluster (a
// RestarterFunc and a MemoryStore).
//
// The package imports no AWS SDK and no CDK; Settings is the JSON the CDK
// construct hands the Lambda in its environment.
package healthcheck
