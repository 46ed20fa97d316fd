// Package hostlock serialises, across processes, the tests that bring up a
// local cluster: every local cluster uses the plan's fixed addresses and
// namespace names, so two at once on one host would collide. `go test ./...`
// runs packages in parallel; each test that calls local.Up takes this lock
// first.
package hostlock

import (
	"os"
	"syscall"
	"testing"
)

// Path is the lock file. It lives in /run so that a reboot clears it.
const Path = "/run/pgha-local.lock"

// Lock blocks until this process holds the host lock, and releases it when
// the test and its subtests have finished (after cleanups registered later,
// such as the cluster's teardown, have run).
func Lock(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(Path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("open host lock: %v", err)
	}
	t.Logf("waiting for the host lock %s", Path)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("take host lock %s: %v", Path, err)
	}
	t.Cleanup(func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}
