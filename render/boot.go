package render

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pgha/pgha/cluster"
)

// MaxUserData is EC2's limit on user data, before base64 encoding ("User
// data is limited to 16 KB, in raw form, before it is base64-encoded").
// UserData is what counts: the boot script compressed.
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html
const MaxUserData = 16384

// heredocEnd ends every file's heredoc in the boot script. The delimiter is
// quoted, so bash expands nothing inside: files arrive byte for byte, and a
// CDK token in them is still there for CloudFormation to replace.
const heredocEnd = "PGHA_EOF"

// AptInstall is how the boot script installs Packages: only what they
// depend on, not what they recommend (what a package recommends is not
// there; a test installs each role's list with these flags and checks that
// every program the node runs exists).
const AptInstall = "apt-get install -q -y --no-install-recommends"

// Packages returns the Debian 13 packages role's boot installs.
func Packages(role cluster.Role) []string { return slices.Clone(packages[role]) }

// packages are the Debian 13 packages each role installs.
var packages = map[cluster.Role][]string{
	// python3-etcd: Patroni's etcd3 support imports it, and Debian's patroni
	// only recommends it.
	// pgbackrest: backups and WAL archiving to S3 (see pgbackrest.go).
	cluster.RolePostgres: {"postgresql-17", "patroni", "python3-etcd", "etcd-client", "awscli", "pgbackrest"},
	cluster.RoleEtcd:     {"etcd-server", "etcd-client"},
	cluster.RoleHAProxy:  {"haproxy"},
	// podman: daemonless, so the app's unit is the only one; the local
	// cluster runs the same unit in a node container.
	cluster.RoleApp: {"podman", "awscli"},
}

// AMIPackages is what Debian's official Debian 13 EC2 AMI has, besides
// debootstrap's minbase, that a node's scripts may use without installing
// it: a subset of the image's FAI package classes in debian-cloud-images
// (https://salsa.debian.org/cloud-team/debian-cloud-images/-/tree/master/config_space/13/package_config),
// installed without their recommends. The packages test and the local
// cluster's node image start from it. A program from a package not listed
// here must come from the role's own Packages.
var AMIPackages = []string{
	// SYSTEM_BOOT: the init system, device manager and tools the boot uses.
	"systemd", "systemd-sysv", "udev", "kmod", "e2fsprogs", "util-linux", "sudo",
	// EXTRAS.
	"curl", "ca-certificates",
	// EC2: the AWS CLI, cloud-init (which runs the user data; it brings
	// python3), growpart and the EBS NVMe device names.
	"awscli", "cloud-init", "python3", "cloud-guest-utils", "amazon-ec2-utils",
}

// AMISources are the AMI's APT sources, trixie with its updates and
// security suites: a package's version and dependencies on EC2 are those
// of the point release plus its updates. The packages test and the local
// cluster's node image use them.
const AMISources = `Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`

var bootTmpl = parse("templates/boot.sh")

// The boot's unit runs bootAgain at every later boot, which runs the user
// data again when the last run failed or the user data changed: bootDone
// holds the sha256 of the user data that last booted well, and userData
// the instance's current user data, fetched from the metadata service.
const (
	bootUnit  = "pgha-boot.service"
	bootAgain = "/usr/local/lib/pgha/boot-again"
	bootDone  = "/var/lib/pgha/boot-ok"
	userData  = "/var/lib/pgha/user-data"
)

// BootStatusParameter is the SSM parameter node n's boot reports to:
// "booting", "ok", "degraded: <why>" or "failed: <why>", then a UTC time.
func BootStatusParameter(c cluster.Config, n cluster.Node) string {
	return BootStatusPath(c) + "/" + n.Name
}

// BootStatusRegion is the region node n reports its boot in: its own, but
// the primary region for a witness node, whose region runs no checker.
func BootStatusRegion(p *cluster.Plan, n cluster.Node) string {
	if r, _ := p.Region(n.Region); r.Witness {
		return p.Primary().Name
	}
	return n.Region
}

// BootStatusPath is the path of every node's BootStatusParameter.
func BootStatusPath(c cluster.Config) string { return "/pgha/" + c.Name + "/boot" }

// BootScript renders the bash script EC2 runs once, as root, as node n's
// user data: it installs the packages, reads the node's passwords from
// Secrets Manager (by name, in the node's region), mounts the data volume
// on PostgreSQL nodes, writes Files and Dirs, and starts Services. Pass it
// to the instance as UserData, compressed; it stays far under MaxUserData
// for every node of the default and witness plans.
func BootScript(p *cluster.Plan, n cluster.Node) (string, error) {
	files, err := Files(p, n)
	if err != nil {
		return "", err
	}
	for _, f := range files {
		if !strings.HasSuffix(f.Content, "\n") || strings.Contains("\n"+f.Content, "\n"+heredocEnd+"\n") {
			return "", fmt.Errorf("render boot script for %s: %s cannot go in a %s heredoc", n.Name, f.Path, heredocEnd)
		}
	}
	fetched, err := Fetched(p, n)
	if err != nil {
		return "", err
	}
	svcs, err := Services(p, n)
	if err != nil {
		return "", err
	}
	name := p.Config.SecretName
	bucketsFormat, repos := PgBackRestBucketsFormat(p)
	var timers []string
	if n.Role == cluster.RolePostgres {
		timers = append(slices.Sorted(maps.Keys(backupTimers(p, n))), volumeTimer)
	}
	var buf bytes.Buffer
	err = bootTmpl.Execute(&buf, map[string]any{
		"Header":               Header,
		"Plan":                 p,
		"Node":                 n,
		"Packages":             strings.Join(packages[n.Role], " "),
		"AptInstall":           AptInstall,
		"Postgres":             n.Role == cluster.RolePostgres,
		"Etcd":                 n.Role == cluster.RoleEtcd,
		"App":                  n.Role == cluster.RoleApp,
		"HAProxy":              n.Role == cluster.RoleHAProxy,
		"PatroniSecrets":       PatroniSecretsConfig,
		"PatroniSecretsFormat": patroniSecretsFormat,
		"SuperSecret":          name(cluster.SecretSuperuser),
		"ReplSecret":           name(cluster.SecretReplication),
		"APISecret":            name(cluster.SecretPatroniAPI),
		"StatsSecret":          name(cluster.SecretHAProxyStats),
		"StatsUsers":           HAProxyStatsUsers,
		"StatsUser":            cluster.HAProxyStatsUser,
		"Userlist":             haproxyUserlist,
		"TLSRefresh":           TLSRefreshScript,
		"TLSTimer":             tlsRefreshTimer,
		"AppSecret":            p.Config.SecretName(cluster.SecretApp),
		"AppPasswordFile":      AppPasswordFile,
		"AppUID":               AppUID,
		"DataMount":            DataMount,
		"Dirs":                 Dirs(n),
		"Files":                files,
		"Fetched":              fetched,
		"StatusParameter":      BootStatusParameter(p.Config, n),
		"StatusRegion":         BootStatusRegion(p, n),
		"BootUnit":             bootUnit,
		"UserData":             userData,
		"BootAgain":            bootAgain,
		"BootDone":             bootDone,
		"Services":             svcs,
		"EOF":                  heredocEnd,
		"BucketsFormat":        bucketsFormat,
		"BucketRepos":          make([]struct{}, repos),
		"BucketsFile":          PgBackRestBuckets,
		"Timers":               timers,
	})
	if err != nil {
		return "", fmt.Errorf("render boot script for %s: %w", n.Name, err)
	}
	return stripComments(buf.String()), nil
}

// UserData is node n's EC2 user data: BootScript, gzip-compressed.
// cloud-init uncompresses gzip user data before it looks at it ("Content
// found to be gzip compressed will be uncompressed ... useful because user
// data is limited to ~16384 bytes",
// https://cloudinit.readthedocs.io/en/latest/explanation/format.html), so
// the script it runs is BootScript byte for byte, and the limit holds the
// compressed size: about a third. The bytes are the same at every render
// (no time or name in the gzip header), so the template changes only when
// the script does.
func UserData(p *cluster.Plan, n cluster.Node) ([]byte, error) {
	script, err := BootScript(p, n)
	if err != nil {
		return nil, err
	}
	return Gzip([]byte(script)), nil
}

// Gzip compresses b the way UserData does: deterministically.
func Gzip(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // a valid level: no error
	w.Write(b)                                              // a bytes.Buffer does not fail
	w.Close()
	return buf.Bytes()
}

// stripComments drops the boot script's own comment lines (its first
// paragraph, which says what it is, excepted), not those of the files it
// writes: EC2 takes at most MaxUserData bytes, and the template
// (templates/boot.sh) is where the comments are read.
func stripComments(script string) string {
	var out strings.Builder
	inFile, header := false, true
	for _, line := range strings.SplitAfter(script, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case inFile:
			inFile = strings.TrimRight(line, "\n") != heredocEnd
		case header:
			header = trimmed != ""
		case strings.HasPrefix(trimmed, "#"):
			continue
		case strings.HasSuffix(trimmed, "<<'"+heredocEnd+"'"):
			inFile = true
		}
		out.WriteString(line)
	}
	return out.String()
}
