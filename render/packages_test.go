package render

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mvdan.cc/sh/v3/syntax"

	"github.com/pgha/pgha/cluster"
)

// TestEveryProgramIsInstalled installs each role's Packages, with the boot
// script's own AptInstall flags, into a clean Debian 13 root like the EC2
// AMI's, and checks that everything the role's rendered files use is
// there: the programs every systemd unit's Exec lines and every script
// (the boot script, and each file starting with #!) run, the units they
// require or pass to systemctl, and the users that run services and own
// files. What a package only recommends is not installed, as on EC2: this
// is what caught docker.io without docker-cli (issue 8).
//
// It needs root (chroot, mounts) and the network (Debian's mirror). The
// AMI-like base is built once, with debootstrap, and cached in amiBaseRoot;
// each role gets a throwaway overlay on it, and downloaded packages are
// cached in aptArchives.
func TestEveryProgramIsInstalled(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: installs every role's packages from Debian's mirror")
	}
	if os.Geteuid() != 0 {
		need(t, "installing packages into a Debian 13 root (chroot, mounts) needs root")
	}
	base := ensureAMIBase(t)
	roles := []cluster.Role{cluster.RolePostgres, cluster.RoleEtcd, cluster.RoleHAProxy, cluster.RoleApp}
	for _, role := range roles {
		t.Run(string(role), func(t *testing.T) {
			root := installRole(t, base, Packages(role))
			c := &installCheck{t: t, root: root, role: role, seen: map[string]bool{}}
			c.check(plans(t))
		})
	}
}

const (
	// amiBaseRoot caches the base: debootstrap --variant=minbase plus
	// AMIPackages. It is rebuilt when AMIPackages changes (amiBaseStamp holds the
	// list it was built with).
	amiBaseRoot  = "/var/cache/pgha/rootfs/trixie-ami-base"
	amiBaseStamp = "/.pgha-ami-base"
	// aptArchives is the roots' /var/cache/apt/archives, kept between roles
	// and runs so that a package is downloaded once.
	aptArchives = "/var/cache/pgha/rootfs/trixie-apt-archives"
)

// ensureAMIBase returns amiBaseRoot, building it first if it is missing or
// was built from another AMIPackages (into a .tmp directory, then renamed,
// under an exclusive lock). The test then holds a shared lock, so that no
// other run rebuilds the base under its overlays.
func ensureAMIBase(t *testing.T) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(amiBaseRoot), 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(amiBaseRoot+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	flock(t, lock, syscall.LOCK_EX)
	want := strings.Join(AMIPackages, " ") + "\n"
	if got, err := os.ReadFile(amiBaseRoot + amiBaseStamp); err != nil || string(got) != want {
		buildAMIBase(t, want)
	}
	flock(t, lock, syscall.LOCK_SH)
	return amiBaseRoot
}

func flock(t *testing.T, f *os.File, how int) {
	t.Helper()
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		t.Fatalf("lock %s: %v", f.Name(), err)
	}
}

// buildAMIBase builds amiBaseRoot; the caller holds its lock.
func buildAMIBase(t *testing.T, stamp string) {
	t.Helper()
	if _, err := exec.LookPath("debootstrap"); err != nil {
		need(t, "no cached %s, and debootstrap, which builds it, is not installed: %v", amiBaseRoot, err)
	}
	start := time.Now()
	t.Logf("building the Debian 13 AMI base in %s (a few minutes, once)", amiBaseRoot)
	tmp := amiBaseRoot + ".tmp"
	// A build that was killed (a go test timeout runs no cleanup) may have
	// left its mounts: detach them before removing what it left.
	left := mounts{tmp + "/proc", tmp + "/var/cache/apt/archives"}
	_ = left.unmountAll() // usually nothing is mounted there
	for _, dir := range []string{tmp, amiBaseRoot} {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := runFor(20*time.Minute, nil, "debootstrap", "--variant=minbase", "trixie", tmp, "http://deb.debian.org/debian"); err != nil {
		t.Fatalf("debootstrap into %s: %v\n%s", tmp, err, tail(out))
	}
	if err := os.Remove(filepath.Join(tmp, "etc/apt/sources.list")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []File{
		{Path: "/etc/apt/sources.list.d/debian.sources", Mode: 0o644, Content: AMISources},
		// No service starts in the root while packages install.
		{Path: "/usr/sbin/policy-rc.d", Mode: 0o755, Content: "#!/bin/sh\nexit 101\n"},
	} {
		if err := os.WriteFile(tmp+f.Path, []byte(f.Content), f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	var m mounts
	err := m.chrootFS(tmp)
	if err == nil {
		err = aptInstall(tmp, AMIPackages)
	}
	if uerr := m.unmountAll(); err == nil {
		err = uerr
	}
	if err != nil {
		t.Fatalf("install the AMI packages into %s: %v", tmp, err)
	}
	if err := os.WriteFile(tmp+amiBaseStamp, []byte(stamp), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, amiBaseRoot); err != nil {
		t.Fatal(err)
	}
	t.Logf("AMI base built in %s", time.Since(start).Round(time.Second))
}

// installRole returns a root with pkgs installed on the AMI base: an
// overlay on base, mounted until the test ends, with the boot script's
// apt-get commands run in it.
func installRole(t *testing.T, base string, pkgs []string) string {
	t.Helper()
	dir := t.TempDir() // removed after the unmounts below, which register later
	merged, upper, work := filepath.Join(dir, "root"), filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{merged, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var m mounts
	t.Cleanup(func() {
		if err := m.unmountAll(); err != nil {
			t.Error(err)
		}
	})
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", base, upper, work)
	if err := m.mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatal(err)
	}
	if err := m.chrootFS(merged); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := aptInstall(merged, pkgs); err != nil {
		t.Fatal(err)
	}
	t.Logf("installed %s in %s", strings.Join(pkgs, " "), time.Since(start).Round(time.Second))
	return merged
}

// aptInstall runs, chrooted to root, what the boot script runs: apt-get
// update, then AptInstall pkgs. It holds aptArchives' lock meanwhile.
func aptInstall(root string, pkgs []string) error {
	lock, err := os.OpenFile(aptArchives+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	// The host's resolver, for the mirror's name.
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return err
	}
	os.Remove(filepath.Join(root, "etc/resolv.conf")) // it may be a symbolic link
	if err := os.WriteFile(filepath.Join(root, "etc/resolv.conf"), resolv, 0o644); err != nil {
		return err
	}
	// autoclean drops the cached packages the mirror no longer has.
	script := fmt.Sprintf("set -e; apt-get update -q; %s %s; apt-get autoclean -q", AptInstall, strings.Join(pkgs, " "))
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"DEBIAN_FRONTEND=noninteractive", "HOME=/root", "LC_ALL=C"}
	if out, err := runFor(20*time.Minute, env, "chroot", root, "/bin/sh", "-c", script); err != nil {
		return fmt.Errorf("%s in %s: %v\n%s", script, root, err, tail(out))
	}
	return nil
}

// runFor runs a command with a timeout and env (nil: the test's own) and
// returns its combined output.
func runFor(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// tail is the end of a long command output, where apt and debootstrap
// say what went wrong.
func tail(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > 40 {
		lines = append([]string{"..."}, lines[len(lines)-40:]...)
	}
	return strings.Join(lines, "\n")
}

// mounts are mount points, unmounted last first.
type mounts []string

func (m *mounts) mount(source, target, fstype string, flags uintptr, data string) error {
	if err := syscall.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", source, target, err)
	}
	*m = append(*m, target)
	return nil
}

// chrootFS mounts what apt needs in root: /proc, and aptArchives on its
// /var/cache/apt/archives. root's /dev holds the nodes debootstrap made.
func (m *mounts) chrootFS(root string) error {
	if err := os.MkdirAll(filepath.Join(aptArchives, "partial"), 0o755); err != nil {
		return err
	}
	if err := m.mount("proc", filepath.Join(root, "proc"), "proc", 0, ""); err != nil {
		return err
	}
	return m.mount(aptArchives, filepath.Join(root, "var/cache/apt/archives"), "", syscall.MS_BIND, "")
}

// unmountAll unmounts every mount point, detaching one that is busy (a
// process left running in the root must not keep it, or the temporary
// directory under it, forever).
func (m *mounts) unmountAll() error {
	var errs []error
	for i := len(*m) - 1; i >= 0; i-- {
		target := (*m)[i]
		if err := syscall.Unmount(target, 0); err != nil {
			if err := syscall.Unmount(target, syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", target, err))
			}
		}
	}
	*m = nil
	return errors.Join(errs...)
}

// installCheck checks one role's rendered files against the root its
// packages were installed in, reporting each missing thing once.
type installCheck struct {
	t    *testing.T
	root string
	role cluster.Role
	seen map[string]bool // what was reported, by file and thing
	// files are the node's rendered files (Files and Fetched), by path:
	// they exist on the node although no package installs them.
	files map[string]File
	// units are the units the node's files and boot script write.
	units map[string]bool
}

// rootPath is the shell's PATH on a node (Debian 13 is merged-usr, so
// /bin and /sbin are links to their /usr counterparts).
var rootPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// unitDirs are where systemd finds units on Debian, ours first.
var unitDirs = []string{"/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// notFromDebian are the units the boot script installs from outside
// Debian's archive, and where from.
var notFromDebian = map[string]string{
	"amazon-ssm-agent.service": "AWS's amazon-ssm-agent .deb, which the boot script downloads",
}

// check checks every node of the role in plans.
func (c *installCheck) check(plans map[string]*cluster.Plan) {
	nodes := 0
	for _, name := range slices.Sorted(maps.Keys(plans)) {
		p := plans[name]
		for _, n := range p.ByRole(c.role) {
			nodes++
			c.node(p, n)
		}
	}
	if nodes == 0 {
		c.t.Fatalf("no %s node in any plan", c.role)
	}
}

func (c *installCheck) node(p *cluster.Plan, n cluster.Node) {
	boot, err := BootScript(p, n)
	if err != nil {
		c.t.Fatal(err)
	}
	files, err := Files(p, n)
	if err != nil {
		c.t.Fatal(err)
	}
	fetched, err := Fetched(p, n)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, f := range fetched {
		files = append(files, f.File)
	}
	svcs, err := Services(p, n)
	if err != nil {
		c.t.Fatal(err)
	}
	c.files, c.units = map[string]File{}, map[string]bool{}
	for _, f := range files {
		c.files[f.Path] = f
		if filepath.Dir(f.Path) == UnitDir {
			c.units[filepath.Base(f.Path)] = true
		}
	}

	c.script("boot script", boot)
	for _, f := range files {
		switch {
		case filepath.Dir(f.Path) == UnitDir:
			c.unit(f.Path, f.Content)
		case strings.HasPrefix(f.Content, "#!"):
			c.script(f.Path, f.Content)
		}
		c.user(f.Path, 0, f.Owner)
	}
	for _, d := range Dirs(n) {
		c.user(d.Path, 0, d.Owner)
	}
	for _, s := range svcs {
		if !s.Packaged {
			continue // its unit is among files
		}
		// Debian's unit runs on EC2, Command in the local cluster.
		c.program("service "+s.Unit, 0, s.Command[0])
		c.user("service "+s.Unit, 0, s.User)
		path, host, ok := c.unitFile(s.Unit)
		if !ok {
			c.report("service "+s.Unit, 0, "needs its packaged unit "+s.Unit, c.missing())
			continue
		}
		b, err := os.ReadFile(host)
		if err != nil {
			c.t.Fatal(err)
		}
		c.unit(path, string(b))
	}
}

// report records that file, at line (0: none), uses what ("runs
// /usr/bin/docker"), which problem.
func (c *installCheck) report(file string, line int, what, problem string) {
	if c.seen[file+"\x00"+what] {
		return
	}
	c.seen[file+"\x00"+what] = true
	if line > 0 {
		file = fmt.Sprintf("%s:%d", file, line)
	}
	c.t.Errorf("%s: %s %s, which %s", c.role, file, what, problem)
}

func (c *installCheck) missing() string {
	return fmt.Sprintf("the AMI base plus %s does not install", strings.Join(Packages(c.role), " "))
}

// program checks that prog, an absolute path or a name looked up in
// rootPath, is an executable file in the root or among the node's files.
func (c *installCheck) program(file string, line int, prog string) {
	if f, ok := c.files[prog]; ok {
		if f.Mode&0o111 == 0 {
			c.report(file, line, "runs "+prog, fmt.Sprintf("pgha renders with mode %04o", f.Mode))
		}
		return
	}
	if !filepath.IsAbs(prog) {
		for _, dir := range rootPath {
			if executable(c.root, dir+"/"+prog) == nil {
				return
			}
		}
		c.report(file, line, "runs "+prog, "is in no directory of PATH: "+c.missing())
		return
	}
	if err := executable(c.root, prog); errors.Is(err, fs.ErrNotExist) {
		c.report(file, line, "runs "+prog, c.missing())
	} else if err != nil {
		c.report(file, line, "runs "+prog, err.Error())
	}
}

// unitFile returns the path, in the root and on the host, of the unit
// file systemd would load as name (a template's instance loads the
// template), if there is one.
func (c *installCheck) unitFile(name string) (path, host string, ok bool) {
	if at := strings.Index(name, "@"); at >= 0 {
		name = name[:at+1] + name[strings.LastIndex(name, "."):]
	}
	for _, dir := range unitDirs {
		if host, err := inRoot(c.root, dir+"/"+name); err == nil {
			return dir + "/" + name, host, true
		}
	}
	return "", "", false
}

// needUnit checks that unit name exists: written by pgha, installed from
// outside Debian (notFromDebian), or in the root.
func (c *installCheck) needUnit(file string, line int, name string) {
	if _, _, ok := c.unitFile(name); !ok && !c.units[name] && notFromDebian[name] == "" {
		c.report(file, line, "needs unit "+name, c.missing())
	}
}

// user checks that name is a user, with a group of the same name (the
// owner of every File and Dir), in the root.
func (c *installCheck) user(file string, line int, name string) {
	for _, db := range []string{"/etc/passwd", "/etc/group"} {
		b, err := os.ReadFile(filepath.Join(c.root, db))
		if err != nil {
			c.t.Fatal(err)
		}
		if !strings.Contains("\n"+string(b), "\n"+name+":") {
			c.report(file, line, "needs user "+name, "has no entry in "+db+": "+c.missing())
		}
	}
}

// unitExec are the unit settings whose value is a command line.
var unitExec = []string{"ExecStart", "ExecStartPre", "ExecStartPost", "ExecCondition", "ExecStop", "ExecStopPost", "ExecReload"}

// unit checks a unit file: the program of each Exec line, the units it
// requires, and its User and Group.
// https://www.freedesktop.org/software/systemd/man/latest/systemd.service.html#Command%20lines
func (c *installCheck) unit(file, content string) {
	lines := strings.Split(content, "\n")
	for i := 0; i < len(lines); i++ {
		num, line := i+1, strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) { // continued
			i++
			line = strings.TrimSuffix(line, `\`) + " " + strings.TrimSpace(lines[i])
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case slices.Contains(unitExec, key):
			// Prefixes: - (may fail), @ (argv[0] follows), : + ! (privileges).
			if argv := strings.Fields(strings.TrimLeft(value, "-@:+!|")); len(argv) > 0 {
				c.program(file, num, argv[0])
			}
		case key == "Requires" || key == "Requisite" || key == "BindsTo":
			for _, u := range strings.Fields(value) {
				c.needUnit(file, num, u)
			}
		case key == "User" || key == "Group":
			c.user(file, num, value)
		}
	}
}

// shellBuiltins are bash's builtins (compgen -b), which dash's include:
// they need no program.
var shellBuiltins = strings.Fields(`. : [ alias bg bind break builtin caller cd command compgen complete compopt
	continue declare dirs disown echo enable eval exec exit export false fc fg getopts hash help history jobs
	kill let local logout mapfile popd printf pushd pwd read readarray readonly return set shift shopt source
	suspend test times trap true type typeset ulimit umask unalias unset wait`)

// commandWrapper is a program or builtin that runs another command, given
// after its options: that command is checked too.
type commandWrapper struct {
	withValue []string // options followed by a separate value
	operands  int      // operands before the command (timeout's duration)
	assigns   bool     // NAME=value words may come before the command (env)
	noCommand []string // options that mean there is no command (command -v)
}

var commandWrappers = map[string]commandWrapper{
	"sudo": {withValue: []string{"-u", "-g", "-C", "-D", "-p", "-r", "-t", "-T", "-U",
		"--user", "--group", "--close-from", "--chdir", "--prompt", "--role", "--type", "--command-timeout", "--other-user"}},
	"timeout": {withValue: []string{"-s", "-k", "--signal", "--kill-after"}, operands: 1},
	"env":     {withValue: []string{"-u", "-C", "-S", "--unset", "--chdir", "--split-string"}, assigns: true},
	"xargs": {withValue: []string{"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--arg-file", "--delimiter",
		"--max-args", "--max-procs", "--max-chars", "--max-lines", "--process-slot-var"}},
	"nice":    {withValue: []string{"-n", "--adjustment"}},
	"nohup":   {},
	"setsid":  {},
	"exec":    {withValue: []string{"-a"}},
	"command": {noCommand: []string{"-v", "-V"}},
}

// wrapped returns the words of the command w runs, from the words after
// w's name, or nil.
func (w commandWrapper) wrapped(args []*syntax.Word) []*syntax.Word {
	for len(args) > 0 {
		a := args[0].Lit()
		switch {
		case slices.Contains(w.noCommand, a):
			return nil
		case a == "--":
			args = args[1:]
		case slices.Contains(w.withValue, a):
			args = args[min(2, len(args)):]
			continue
		case strings.HasPrefix(a, "-") && a != "-", w.assigns && strings.Contains(a, "="):
			args = args[1:]
			continue
		}
		break
	}
	if len(args) <= w.operands {
		return nil
	}
	return args[w.operands:]
}

// shellFunc is what a script's function does with its arguments.
type shellFunc struct {
	// runsArgs: the function runs "$@" after shifting shifts words, like
	// the boot script's retry: its arguments after those are a command.
	runsArgs bool
	shifts   int
}

// systemctlNeedsUnit are the systemctl verbs that fail when a unit they
// name does not exist.
var systemctlNeedsUnit = []string{"enable", "disable", "reenable", "start", "stop", "restart", "try-restart", "reload", "reload-or-restart"}

// script checks a shell script: its interpreter, every command it runs
// whose name is a literal, not a builtin and not one of its functions, and
// the units its systemctl commands name.
func (c *installCheck) script(file, content string) {
	shebang, _, _ := strings.Cut(content, "\n")
	interp := strings.Fields(strings.TrimPrefix(shebang, "#!"))
	if len(interp) == 0 {
		c.t.Fatalf("%s: no interpreter on its #! line", file)
	}
	c.program(file, 1, interp[0])
	lang := syntax.LangBash
	if filepath.Base(interp[0]) == "sh" {
		lang = syntax.LangPOSIX
	}
	f, err := syntax.NewParser(syntax.Variant(lang)).Parse(strings.NewReader(content), file)
	if err != nil {
		c.t.Fatalf("parse %s: %v", file, err)
	}
	funcs := map[string]shellFunc{}
	syntax.Walk(f, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.FuncDecl:
			funcs[n.Name.Value] = funcArgs(n)
		case *syntax.Redirect:
			// A unit the script writes itself (cat >/etc/systemd/system/...).
			if path := n.Word.Lit(); n.Op == syntax.RdrOut && filepath.Dir(path) == UnitDir {
				c.units[filepath.Base(path)] = true
			}
		}
		return true
	})
	syntax.Walk(f, func(n syntax.Node) bool {
		if call, ok := n.(*syntax.CallExpr); ok {
			c.command(file, funcs, call.Args)
		}
		return true
	})
}

// funcArgs tells whether function fd runs its arguments.
func funcArgs(fd *syntax.FuncDecl) shellFunc {
	var sf shellFunc
	syntax.Walk(fd.Body, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		switch name := call.Args[0].Lit(); {
		case name == "shift" && len(call.Args) == 1:
			sf.shifts++
		case name == "shift":
			n, _ := strconv.Atoi(call.Args[1].Lit())
			sf.shifts += n
		case isAllArgs(call.Args[0]):
			sf.runsArgs = true
		}
		return true
	})
	return sf
}

// isAllArgs tells whether w is "$@" (or $@).
func isAllArgs(w *syntax.Word) bool {
	if len(w.Parts) != 1 {
		return false
	}
	part := w.Parts[0]
	if dq, ok := part.(*syntax.DblQuoted); ok && len(dq.Parts) == 1 {
		part = dq.Parts[0]
	}
	pe, ok := part.(*syntax.ParamExp)
	return ok && pe.Param.Value == "@" && !pe.Length && pe.Exp == nil && pe.Slice == nil && pe.Repl == nil && pe.Index == nil
}

// command checks one simple command's words.
func (c *installCheck) command(file string, funcs map[string]shellFunc, args []*syntax.Word) {
	for len(args) > 0 {
		name, line := args[0].Lit(), int(args[0].Pos().Line())
		if fn, ok := funcs[name]; ok { // functions come first, as in bash
			if !fn.runsArgs {
				return
			}
			args = args[min(1+fn.shifts, len(args)):]
			continue
		}
		if w, ok := commandWrappers[name]; ok {
			if !slices.Contains(shellBuiltins, name) {
				c.program(file, line, name)
			}
			args = w.wrapped(args[1:])
			continue
		}
		// Not a literal (name is ""), built in, or a relative path: nothing
		// to look up.
		if name == "" || strings.Contains(name, "$") || slices.Contains(shellBuiltins, name) ||
			strings.Contains(name, "/") && !filepath.IsAbs(name) {
			return
		}
		c.program(file, line, name)
		if name == "systemctl" {
			c.systemctl(file, args[1:])
		}
		return
	}
}

// systemctl checks the units a systemctl command names, if its verb needs
// them to exist.
func (c *installCheck) systemctl(file string, args []*syntax.Word) {
	verb := ""
	for _, a := range args {
		switch s := a.Lit(); {
		case strings.HasPrefix(s, "-"):
		case verb == "":
			verb = s
		case slices.Contains(systemctlNeedsUnit, verb) && strings.Contains(s, "."):
			c.needUnit(file, int(a.Pos().Line()), s)
		}
	}
}

// executable checks that path is an executable file in root.
func executable(root, path string) error {
	host, err := inRoot(root, path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(host)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("is not an executable file (%s)", fi.Mode())
	}
	return nil
}

// inRoot returns the host path of path as a process chrooted to root sees
// it, following symbolic links (an absolute one from root); an error when a
// component does not exist.
func inRoot(root, path string) (string, error) {
	todo := strings.Split(path, "/")
	cur := "/"
	for links := 0; len(todo) > 0; {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", path)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return filepath.Join(root, cur), nil
}
