package local

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/render"
)

// DefaultRootFS is where the node image, a Debian 13 root filesystem, is
// cached between runs. Every node boots from it (read-only, an overlay
// per node), and the renderers' tool checks run haproxy, patroni and etcd
// from it.
const DefaultRootFS = "/var/cache/pgha/rootfs/trixie"

// imageScript builds the node image (see its header).
//
//go:embed image.sh
var imageScript string

// localPackages are in the node image for the local cluster's own use,
// not a node's: the AWS emulator (its server needs flask-cors, which it only
// recommends), the registry the app's image is pulled
// from, and ip and ps for whoever inspects a node.
var localPackages = []string{"python3-moto", "python3-flask-cors", "docker-registry", "iproute2", "procps"}

const debianMirror = "http://deb.debian.org/debian"

// imageStamp, in the image, holds imageID: what it was built from.
const imageStamp = ".pgha-image"

// rolePackages is every role's render.Packages, deduplicated.
func rolePackages() []string {
	var out []string
	for _, r := range cluster.Roles {
		for _, p := range render.Packages(r) {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// imageEnv is the build script's environment: the package lists and the
// boot's apt-get command.
func imageEnv() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"AMI_SOURCES=" + render.AMISources,
		"AMI_PACKAGES=" + strings.Join(render.AMIPackages, " "),
		"ROLE_PACKAGES=" + strings.Join(rolePackages(), " "),
		"LOCAL_PACKAGES=" + strings.Join(localPackages, " "),
		"APT_INSTALL=" + render.AptInstall,
	}
}

// imageID identifies an image build: a change of the script or of a
// package list rebuilds the image.
func imageID() string {
	h := sha256.New()
	io.WriteString(h, imageScript)
	for _, e := range imageEnv() {
		io.WriteString(h, e+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ErrNoDebootstrap is returned when the image must be built and
// debootstrap is not installed.
var ErrNoDebootstrap = errors.New("debootstrap not found: install it with `apt-get install debootstrap`")

func imageCurrent(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, imageStamp))
	return err == nil && strings.TrimSpace(string(b)) == imageID()
}

// EnsureRootFS returns when dir holds the current node image, building it
// first if it is missing or was built from another script or package list
// (into dir.tmp, then renamed, under a lock so that concurrent callers
// build it once). Progress goes to log.
func EnsureRootFS(ctx context.Context, dir string, log io.Writer) error {
	if imageCurrent(dir) {
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
	if imageCurrent(dir) {
		return nil // another process built it while we waited
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return ErrNoDebootstrap
	}
	fmt.Fprintf(log, "building the Debian 13 node image in %s (about a minute or two, once)\n", dir)
	start := time.Now()
	archives := filepath.Join(filepath.Dir(dir), "trixie-apt-archives")
	cmd := exec.CommandContext(ctx, "bash", "-c", imageScript, "image.sh", dir, debianMirror, archives)
	cmd.Env = imageEnv()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build the node image into %s.tmp: %w", dir, err)
	}
	tmp := dir + ".tmp"
	if err := os.WriteFile(filepath.Join(tmp, imageStamp), []byte(imageID()+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	fmt.Fprintf(log, "node image built in %s\n", time.Since(start).Round(time.Second))
	return nil
}
