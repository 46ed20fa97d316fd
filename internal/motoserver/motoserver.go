// Package motoserver runs Debian 13's moto server (python3-moto, the AWS
// emulator of the local cluster) for a test, from the node image's root.
package motoserver

import (
	"bytes"
	"net"
	"os/exec"
	"testing"
	"time"
)

// Start starts moto_server from root (a Debian 13 root with python3-moto,
// such as local.DefaultRootFS; the caller checks it is there and that the
// test runs as root) on a free port of 127.0.0.1, stopped when the test
// ends, and returns its URL. Point the AWS CLI at it with AWS_ENDPOINT_URL,
// the SDK with BaseEndpoint; any credentials do.
func Start(tb testing.TB, root string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	var log bytes.Buffer
	cmd := exec.Command("chroot", root, "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=/root", "/usr/bin/moto_server", "-H", "127.0.0.1", "-p", port)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if tb.Failed() {
			tb.Logf("moto server log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			tb.Fatalf("moto server not listening on %s after 30 s", addr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
