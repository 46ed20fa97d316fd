// Package drill injects faults into a local pgha cluster (package local)
// under a steady write load and measures what clients see: the time from the
// fault to the first write accepted again (RTO), the failed-write window, and
// acknowledged writes missing afterwards.
//
// A drill runs on a cluster that is whole (one running leader, every other
// PostgreSQL node streaming on its timeline):
//
//  1. a Writer inserts sequential rows through every HAProxy's write port
//     (5000) every 20 ms, each attempt bounded by a 1 s timeout, and records
//     every attempt; an acknowledged write is a commit that returned OK;
//  2. the fault is injected, held, and healed;
//  3. the drill waits until the cluster is whole again, stops the writer,
//     waits until every replica has replayed the leader's last WAL, and
//     compares the rows of every node with each other and with the
//     acknowledged writes.
//
// The verifier logs in to each PostgreSQL node as the superuser over
// 127.0.0.1 from inside the node's network namespace: pg_hba.conf accepts the
// superuser only from the PostgreSQL nodes themselves, and nothing at all
// from the root namespace's link address.
//
// Drills lists the faults; Run runs one; Summarize and WriteTable turn
// results into the table `make drill` prints.
package drill
