package local

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// claimPath records which directory's cluster owns the machine's
// namespaces and ranges: only one local cluster fits on a machine, and Up
// claims it before creating anything, so that concurrent Ups (tests and
// drills running in parallel) do not trip over each other.
const claimPath = "/run/pgha-local.claim"

// claim makes dir the owner of the machine's local cluster, or returns
// ErrRangeInUse naming the current owner. A claim whose owner has no state
// file and whose claiming process is gone is stale and taken over.
func claim(dir string) error {
	lock, err := os.OpenFile(claimPath+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if b, err := os.ReadFile(claimPath); err == nil {
		pidStr, owner, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		pid, _ := strconv.Atoi(pidStr)
		_, stateErr := os.Stat(statePath(owner))
		ownerAlive := pid > 0 && syscall.Kill(pid, 0) == nil
		if owner != dir && (stateErr == nil || ownerAlive) {
			return fmt.Errorf("%w: the local cluster of %s is up (pgha-local down --dir %s)", ErrRangeInUse, owner, owner)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.WriteFile(claimPath, fmt.Appendf(nil, "%d %s\n", os.Getpid(), dir), 0o644)
}

// release drops dir's claim, if it holds it.
func release(dir string) error {
	b, err := os.ReadFile(claimPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, owner, _ := strings.Cut(strings.TrimSpace(string(b)), " "); owner != dir {
		return nil
	}
	return os.Remove(claimPath)
}
