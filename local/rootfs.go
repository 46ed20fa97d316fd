package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// DefaultRootFS is where the Debian 13 root filesystem is cached between
// runs.
const DefaultRootFS = "/var/cache/pgha/rootfs/trixie"

// rootfsPackages are the packages debootstrap installs: the same Debian 13
// packages the EC2 nodes install.
const rootfsPackages = "postgresql-17,patroni,etcd-server,etcd-client,haproxy,python3-etcd,ca-certificates,procps"

const debianMirror = "http://deb.debian.org/debian"

// rootfsBinaries must exist in a usable root filesystem.
var rootfsBinaries = []string{
	"usr/bin/patroni",
	"usr/lib/postgresql/17/bin/postgres",
	"usr/lib/postgresql/17/bin/pg_rewind",
	"usr/bin/etcd",
	"usr/bin/etcdctl",
	"usr/sbin/haproxy",
	"usr/bin/env",
}

// ErrNoDebootstrap is returned when the root filesystem must be built and
// debootstrap is not installed.
var ErrNoDebootstrap = errors.New("debootstrap not found: install it with `apt-get install debootstrap`")

// checkRootFS reports the first expected binary missing from dir.
func checkRootFS(dir string) error {
	for _, b := range rootfsBinaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("root filesystem %s is incomplete: %s is missing", dir, b)
		}
	}
	return nil
}

// EnsureRootFS returns when dir holds a Debian 13 root filesystem with the
// cluster's packages, building it with debootstrap first if it is missing
// (into dir.tmp, then renamed, under a lock so that concurrent callers build
// it once). Progress goes to log.
func EnsureRootFS(ctx context.Context, dir string, log io.Writer) error {
	if checkRootFS(dir) == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if checkRootFS(dir) == nil {
		return nil // another process built it while we waited
	}
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%w; remove it to rebuild", checkRootFS(dir))
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return ErrNoDebootstrap
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	fmt.Fprintf(log, "building the Debian 13 root filesystem in %s (a few minutes, once)\n", dir)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+rootfsPackages, "trixie", tmp, debianMirror)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap into %s: %w", tmp, err)
	}
	if err := checkRootFS(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	fmt.Fprintf(log, "root filesystem built in %s\n", time.Since(start).Round(time.Second))
	return nil
}
