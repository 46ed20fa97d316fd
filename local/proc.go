package local

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a daemon the local cluster started.
type proc struct {
	Service string `json:"service"` // e.g. "patroni"
	PID     int    `json:"pid"`
	// Start is the process's start time in clock ticks since boot
	// (/proc/PID/stat field 22), which tells it from a later process that
	// reuses the pid.
	Start uint64 `json:"start"`
}

// launch is how to start one daemon of a node.
type launch struct {
	service string
	ns      string // network namespace; "" is the root namespace
	rootfs  string // "" runs the command on the host's filesystem
	uid     int
	gid     int
	env     []string
	argv    []string
	logFile string
}

// nodeScript runs inside a network namespace and a private mount
// namespace (the AWS side's emulator and registry): it gives its root
// /proc, /dev, /dev/shm and /sys, then chroots and drops to the service's
// user. The mounts live as long as the mount
// namespace, that is as long as the daemon and its children: nothing to
// unmount on teardown.
const nodeScript = `set -e
root=$1; shift
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount -t tmpfs -o mode=1777,size=512m tmpfs "$root/dev/shm"
mount -t sysfs sysfs "$root/sys"
user=$1; groups=$2; shift 2
exec chroot --userspec="$user" --groups="$groups" "$root" "$@"
`

// command builds the exec.Cmd of l.
func (l launch) command() *exec.Cmd {
	var cmd *exec.Cmd
	switch {
	case l.ns == "":
		cmd = exec.Command(l.argv[0], l.argv[1:]...)
	case l.rootfs == "":
		cmd = exec.Command("ip", append([]string{"netns", "exec", l.ns}, l.argv...)...)
	default:
		args := []string{"netns", "exec", l.ns, "unshare", "--mount", "--propagation", "private", "--",
			"/bin/sh", "-c", nodeScript, "pgha-node", l.rootfs}
		args = append(args, fmt.Sprintf("%d:%d", l.uid, l.gid), strconv.Itoa(l.gid))
		cmd = exec.Command("ip", append(args, l.argv...)...)
	}
	cmd.Env = l.env
	// Its own session: the daemon outlives `pgha-local up` and a Ctrl-C in
	// the terminal does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// start starts l, detached, its output appended to its log file.
func (l launch) start() (proc, error) {
	if err := os.MkdirAll(filepath.Dir(l.logFile), 0o755); err != nil {
		return proc{}, err
	}
	f, err := os.OpenFile(l.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return proc{}, err
	}
	defer f.Close()
	fmt.Fprintf(f, "---- %s: starting %s\n", time.Now().Format(time.RFC3339), strings.Join(l.argv, " "))
	cmd := l.command()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		where := l.ns
		if where == "" {
			where = "the root namespace"
		}
		return proc{}, fmt.Errorf("start %s in %s: %w", l.service, where, err)
	}
	// Reap it if it exits while this process lives (tests, --foreground).
	go cmd.Wait()
	p := proc{Service: l.service, PID: cmd.Process.Pid}
	p.Start, _ = procStart(p.PID)
	return p, nil
}

// procStat returns a process's state letter and start time.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return f[0][0], start, err
}

func procStart(pid int) (uint64, error) {
	_, start, err := procStat(pid)
	return start, err
}

// alive reports whether p still runs (a zombie does not).
func (p proc) alive() bool {
	state, start, err := procStat(p.PID)
	return err == nil && start == p.Start && state != 'Z' && state != 'X'
}

// nsPIDs lists the processes in a network namespace, as `ip netns pids`
// does: every process whose /proc/PID/ns/net is the namespace.
func nsPIDs(ns string) []int {
	var want syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+ns, &want); err != nil {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue
		}
		// Never this process: a program that drives the cluster may have
		// entered a node's namespace on one of its threads (to dial it),
		// and stopping that node must not stop the program.
		if st.Dev == want.Dev && st.Ino == want.Ino && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// signalNS sends sig to every process in a network namespace.
func signalNS(ns string, sig syscall.Signal) {
	for _, pid := range nsPIDs(ns) {
		_ = syscall.Kill(pid, sig)
	}
}

// nsProcStates counts the processes of a namespace that are neither zombies nor
// stopped, and the stopped ones.
func nsProcStates(ns string) (running, stopped int) {
	for _, pid := range nsPIDs(ns) {
		state, _, err := procStat(pid)
		switch {
		case err != nil || state == 'Z' || state == 'X':
		case state == 'T' || state == 't':
			stopped++
		default:
			running++
		}
	}
	return running, stopped
}

// stopNS stops every process of a namespace: SIGTERM (and SIGCONT, for
// frozen ones), then SIGKILL for what is left after grace. etcd may ignore
// SIGTERM for 20 s or more, hence the bound.
func stopNS(ctx context.Context, ns string, grace time.Duration) error {
	signalNS(ns, syscall.SIGTERM)
	signalNS(ns, syscall.SIGCONT)
	if waitNSEmpty(ctx, ns, grace) {
		return nil
	}
	signalNS(ns, syscall.SIGKILL)
	if waitNSEmpty(context.WithoutCancel(ctx), ns, 10*time.Second) {
		return nil
	}
	return fmt.Errorf("processes %v still in namespace %s after SIGKILL", nsPIDs(ns), ns)
}

func waitNSEmpty(ctx context.Context, ns string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if r, s := nsProcStates(ns); r+s == 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// account is a user of the root filesystem.
type account struct {
	uid, gid int
	home     string
}

// readPasswd reads the root filesystem's /etc/passwd: the uids there are
// not the host's (postgres is 102 in Debian 13's root, 101 on the host).
func readPasswd(rootfs string) (map[string]account, error) {
	f, err := os.Open(filepath.Join(rootfs, "etc/passwd"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	users := map[string]account{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), ":")
		if len(fs) < 7 {
			continue
		}
		uid, err1 := strconv.Atoi(fs[2])
		gid, err2 := strconv.Atoi(fs[3])
		if err1 != nil || err2 != nil {
			continue
		}
		users[fs[0]] = account{uid: uid, gid: gid, home: fs[5]}
	}
	return users, sc.Err()
}

// startAll starts every launch, in order.
func startAll(ls []launch) ([]proc, error) {
	var ps []proc
	for _, l := range ls {
		p, err := l.start()
		if err != nil {
			return ps, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}
