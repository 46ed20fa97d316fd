package local

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// dialInNetns dials from inside network namespace ns: the socket is created
// on an OS thread moved into ns, and keeps that namespace for its life; the
// thread then moves back and returns to the Go scheduler (or, if it cannot,
// stays locked and ends with its goroutine).
func dialInNetns(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: fmt.Errorf("own network namespace: %w", err)}
			return
		}
		defer home.Close()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- result{err: fmt.Errorf("network namespace %s: %w", ns, err)}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter network namespace %s: %w", ns, err)}
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		ch <- result{conn, err}
		// Go back home before freeing the thread. A thread left in ns would
		// die with this goroutine — unless it is the process's main thread,
		// which Go keeps: the whole process would then count as one of the
		// node's processes, and stopping the node would signal it too.
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	r := <-ch
	return r.conn, r.err
}

// DialInNode dials from inside node's network namespace, as a program on
// the node would: its source address is the node's.
func DialInNode(ctx context.Context, node, network, addr string) (net.Conn, error) {
	return dialInNetns(ctx, nodeNS(node), network, addr)
}
