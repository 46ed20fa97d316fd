package local

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/render"
)

// The AWS side of the nodes' boot lives in one namespace of its own,
// awsNS, joined to the core router: the instance metadata service at its
// EC2 address, an AWS emulator (Debian 13's moto server, every service on
// one HTTPS port, told apart by the request's signature) and the registry
// the app's image is pulled from (Debian's docker-registry), each at an
// address of its own. A node's /etc/hosts sends AWS's regional endpoint
// names to the emulator and the ECR registry's name to the registry; both
// serve a certificate of the cluster's own CA, which the nodes trust. The
// boot script, the AWS CLI and podman run unchanged.
const awsNS = nsPrefix + "aws"

// awsAccount is the account the emulator answers for (moto's default).
const awsAccount = "123456789012"

// imdsAddr is the instance metadata service's address, as on EC2.
var imdsAddr = netip.MustParseAddr("169.254.169.254")

// awsAddrs are the emulator's and the registry's addresses: the top of
// the link net, past every /30 the routers use.
func awsAddrs(linkNet netip.Prefix) (emulator, registry netip.Addr) {
	a := linkNet.Addr().As4()
	a[3] = 241
	e := netip.AddrFrom4(a)
	return e, e.Next()
}

// s3Addr is the address of data region i's S3 endpoint: a server of its
// own per region (the emulator's S3 holds one region's buckets), so that
// one region's S3 can be cut off (CutS3).
func s3Addr(linkNet netip.Prefix, i int) netip.Addr {
	a := linkNet.Addr().As4()
	a[3] = byte(243 + i)
	return netip.AddrFrom4(a)
}

// s3Addrs are the S3 endpoints' addresses, by data region.
func (n network) s3Addrs() map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for i, r := range n.plan.DataRegions() {
		out[r.Name] = s3Addr(n.linkNet, i)
	}
	return out
}

// awsLinkIndex is the link net /30 of awsNS's link to the core router,
// after the root namespace's and every region's.
func (n network) awsLinkIndex() int { return len(n.plan.Regions) + 1 }

// awsSteps are the ip commands that make awsNS and route to its
// addresses from the core router and the root namespace (the region
// routers' default route is the core).
func (n network) awsSteps() [][]string {
	coreEnd, awsEnd := linkAddrs(n.linkNet, n.awsLinkIndex())
	emu, reg := awsAddrs(n.linkNet)
	_, rootCore := linkAddrs(n.linkNet, 0)
	steps := [][]string{
		{"link", "add", "aws0", "netns", coreNS, "type", "veth", "peer", "name", "core", "netns", awsNS},
		{"-n", coreNS, "addr", "add", coreEnd.String(), "dev", "aws0"},
		{"-n", coreNS, "link", "set", "aws0", "up"},
		{"-n", awsNS, "addr", "add", awsEnd.String(), "dev", "core"},
		{"-n", awsNS, "link", "set", "core", "up"},
		{"-n", awsNS, "route", "add", "default", "via", coreEnd.Addr().String()},
	}
	addrs := []netip.Addr{imdsAddr, emu, reg}
	for _, r := range n.plan.DataRegions() {
		addrs = append(addrs, n.s3Addrs()[r.Name])
	}
	for _, a := range addrs {
		steps = append(steps,
			[]string{"-n", awsNS, "addr", "add", a.String() + "/32", "dev", "lo"},
			[]string{"-n", coreNS, "route", "add", a.String() + "/32", "via", awsEnd.Addr().String()},
		)
	}
	for _, a := range addrs[1:] {
		steps = append(steps, []string{"route", "add", a.String() + "/32", "via", rootCore.Addr().String(), "dev", rootLink})
	}
	return steps
}

// awsHosts is what a node's /etc/hosts adds: AWS's endpoint names of every
// region of the plan, to the emulator and the registry, and each data
// region's S3 endpoint and its backup bucket's virtual-hosted name (as
// pgBackRest addresses it) to that region's S3 server.
func awsHosts(p *cluster.Plan, linkNet netip.Prefix) string {
	emu, reg := awsAddrs(linkNet)
	s3 := network{plan: p, linkNet: linkNet}.s3Addrs()
	var b strings.Builder
	for _, r := range p.Regions {
		fmt.Fprintf(&b, "%s ssm.%s.amazonaws.com secretsmanager.%s.amazonaws.com api.ecr.%s.amazonaws.com sts.%s.amazonaws.com\n",
			emu, r.Name, r.Name, r.Name, r.Name)
		fmt.Fprintf(&b, "%s %s\n", reg, registryHost(r.Name))
		if a, ok := s3[r.Name]; ok {
			fmt.Fprintf(&b, "%s s3.%s.amazonaws.com %s.s3.%s.amazonaws.com\n", a, r.Name, p.Config.BackupBucket(awsAccount, r.Name), r.Name)
		} else {
			// The witness: no bucket; the boot's network check asks its S3.
			fmt.Fprintf(&b, "%s s3.%s.amazonaws.com\n", emu, r.Name)
		}
	}
	return b.String()
}

// registryHost is the ECR registry of the account in region.
func registryHost(region string) string {
	return awsAccount + ".dkr.ecr." + region + ".amazonaws.com"
}

// AppImage is the app image's reference in the local registry: the
// primary region's ECR registry, as the CDK's asset is.
func AppImage(p *cluster.Plan) string {
	return registryHost(p.Primary().Name) + "/pgha-app:local"
}

// awsDir holds the AWS side's state: the CA, the emulator's root.
func (c *Cluster) awsDir() string { return filepath.Join(c.dir, "aws") }

// tlsFiles names the cluster CA and the endpoints' certificate.
type tlsFiles struct{ CA, Cert, Key string }

func (c *Cluster) tls() tlsFiles {
	d := filepath.Join(c.awsDir(), "tls")
	return tlsFiles{CA: filepath.Join(d, "ca.crt"), Cert: filepath.Join(d, "server.crt"), Key: filepath.Join(d, "server.key")}
}

// makeCA writes a CA and, signed by it, one certificate for every AWS
// endpoint name of awsHosts and the emulator's and registry's addresses.
// The CA's key is used once and not kept.
func (c *Cluster) makeCA() error {
	f := c.tls()
	if err := os.MkdirAll(filepath.Dir(f.CA), 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgha local AWS CA " + c.plan.Config.Name},
		NotBefore: now, NotAfter: now.AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	emu, reg := awsAddrs(c.st.LinkNet)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "amazonaws.com"},
		NotBefore: now, NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{emu.AsSlice(), reg.AsSlice()},
	}
	for _, a := range c.net().s3Addrs() {
		leaf.IPAddresses = append(leaf.IPAddresses, a.AsSlice())
	}
	for _, r := range c.plan.Regions {
		leaf.DNSNames = append(leaf.DNSNames, "*."+r.Name+".amazonaws.com", "*.ecr."+r.Name+".amazonaws.com", "*.s3."+r.Name+".amazonaws.com", registryHost(r.Name))
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	for _, w := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{{f.CA, "CERTIFICATE", caDER, 0o644}, {f.Cert, "CERTIFICATE", der, 0o644}, {f.Key, "EC PRIVATE KEY", keyDER, 0o600}} {
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), w.mode); err != nil {
			return err
		}
	}
	return nil
}

// awsTransport is an HTTP transport that trusts the cluster CA, for the
// emulator and the registry seen from the root namespace.
func (c *Cluster) awsTransport() (*http.Transport, error) {
	pem, err := os.ReadFile(c.tls().CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", c.tls().CA)
	}
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}, nil
}

// awsConfig is an AWS SDK configuration for region that reaches the
// emulator from the root namespace, with the fake credentials of the
// emulator.
func (c *Cluster) awsConfig(region string) (aws.Config, error) {
	tr, err := c.awsTransport()
	if err != nil {
		return aws.Config{}, err
	}
	emu, _ := awsAddrs(c.st.LinkNet)
	return aws.Config{
		Region:       region,
		BaseEndpoint: aws.String("https://" + emu.String()),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		HTTPClient:   &http.Client{Transport: tr, Timeout: 30 * time.Second},
	}, nil
}

// awsLaunches are the emulator and the registry, chrooted into the AWS
// side's own overlay of the node image, and the metadata service, which is
// pgha-local itself (`pgha-local imds`).
func (c *Cluster) awsLaunches(binary string) []launch {
	emu, _ := awsAddrs(c.st.LinkNet)
	logFile := func(s string) string { return filepath.Join(c.dir, "logs", "aws-"+s+".log") }
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
	root := c.awsRoot()
	// Each data region's S3 is a moto server of its own, on plain HTTP
	// behind an HAProxy that serves its HTTPS: OpenSSL 3 clients such as
	// pgBackRest fail on the TLS of moto's development server ("unexpected
	// eof while reading", no close_notify), which the AWS CLI tolerates.
	s3 := []launch{{service: "s3-tls", ns: awsNS, rootfs: root, env: env, logFile: logFile("s3-tls"),
		argv: []string{"/usr/sbin/haproxy", "-W", "-f", s3ProxyConfig}}}
	for i, r := range c.plan.DataRegions() {
		s3 = append(s3, launch{service: "s3-" + r.Name, ns: awsNS, rootfs: root, env: env, logFile: logFile("s3-" + r.Name),
			argv: []string{"/usr/bin/moto_server", "-H", "127.0.0.1", "-p", fmt.Sprint(s3Port(i))}})
	}
	return append(s3, []launch{
		{service: "emulator", ns: awsNS, rootfs: root, env: env, logFile: logFile("emulator"),
			argv: []string{"/usr/bin/moto_server", "-H", emu.String(), "-p", "443", "-c", awsTLSDir + "/server.crt", "-k", awsTLSDir + "/server.key"}},
		{service: "registry", ns: awsNS, rootfs: root, env: env, logFile: logFile("registry"),
			argv: []string{"/usr/bin/docker-registry", "serve", registryConfig}},
		{service: "imds", ns: awsNS, env: env, logFile: logFile("imds"),
			argv: []string{binary, IMDSCommand, "--dir", c.dir, "--addr", netip.AddrPortFrom(imdsAddr, 80).String()}},
	}...)
}

// s3Port is the port of data region i's S3 server, behind the HTTPS
// proxy, on awsNS's loopback.
func s3Port(i int) int { return 9000 + i }

// s3Proxy is the HTTPS proxy's configuration: each data region's S3
// address to its server.
func (c *Cluster) s3Proxy() string {
	var b strings.Builder
	b.WriteString("global\n    log stderr format short local0 warning\ndefaults\n    mode http\n    log global\n" +
		"    timeout connect 5s\n    timeout client 5m\n    timeout server 5m\n")
	for i, r := range c.plan.DataRegions() {
		fmt.Fprintf(&b, "frontend s3-%s\n    bind %s ssl crt %s/server.pem\n    default_backend s3-%s\nbackend s3-%s\n    server moto 127.0.0.1:%d\n",
			r.Name, netip.AddrPortFrom(c.net().s3Addrs()[r.Name], 443), awsTLSDir, r.Name, r.Name, s3Port(i))
	}
	return b.String()
}

// Paths in the AWS side's root.
const (
	s3ProxyConfig  = "/etc/pgha-local/s3-proxy.cfg"
	awsTLSDir      = "/etc/pgha-local/tls"
	registryConfig = "/etc/pgha-local/registry.yml"
	registryData   = "/var/lib/pgha-local/registry"
)

func (c *Cluster) awsRoot() string { return filepath.Join(c.awsDir(), "root") }

// prepareAWS mounts the AWS side's overlay and writes the emulator's and
// the registry's configuration into it.
func (c *Cluster) prepareAWS() error {
	if err := c.makeCA(); err != nil {
		return err
	}
	if err := mountOverlay(c.st.RootFS, c.awsDir()); err != nil {
		return err
	}
	root := c.awsRoot()
	f := c.tls()
	var pem []byte
	for _, p := range [][2]string{{f.Cert, "server.crt"}, {f.Key, "server.key"}} {
		b, err := os.ReadFile(p[0])
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(root, awsTLSDir, p[1]), b, 0o600, account{}); err != nil {
			return err
		}
		pem = append(pem, b...)
	}
	// HAProxy's crt: the certificate, then its key.
	if err := writeFile(filepath.Join(root, awsTLSDir, "server.pem"), pem, 0o600, account{}); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(root, s3ProxyConfig), []byte(c.s3Proxy()), 0o644, account{}); err != nil {
		return err
	}
	_, reg := awsAddrs(c.st.LinkNet)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  tls:
    certificate: %s/server.crt
    key: %s/server.key
`, registryData, netip.AddrPortFrom(reg, 443), awsTLSDir, awsTLSDir)
	if err := writeFile(filepath.Join(root, registryConfig), []byte(cfg), 0o644, account{}); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Join(root, registryData), 0o755)
}

// waitAWS waits until the emulator and the registry answer.
func (c *Cluster) waitAWS(ctx context.Context) error {
	tr, err := c.awsTransport()
	if err != nil {
		return err
	}
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	emu, reg := awsAddrs(c.st.LinkNet)
	urls := []string{"https://" + emu.String() + "/moto-api/", "https://" + reg.String() + "/v2/"}
	for _, a := range c.net().s3Addrs() {
		urls = append(urls, "https://"+a.String()+"/moto-api/")
	}
	for _, u := range urls {
		for {
			resp, err := client.Get(u)
			if err == nil {
				resp.Body.Close()
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s does not answer: %v", u, err)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// seedAWS creates in the emulator what the CDK stacks create on AWS and
// the nodes' boot reads: the secrets, in every region whose nodes read
// them (on AWS, the primary region's and their replicas), the parameters
// the boot fetches, and the app's image parameter.
func (c *Cluster) seedAWS(ctx context.Context) error {
	params := map[string]map[string]string{} // region → name → value
	secrets := map[string]bool{}             // region
	for _, n := range c.plan.Nodes {
		if len(cluster.SecretsFor(n.Role)) > 0 {
			secrets[n.Region] = true
		}
		fetched, err := render.Fetched(c.plan, n)
		if err != nil {
			return err
		}
		for _, f := range fetched {
			if params[n.Region] == nil {
				params[n.Region] = map[string]string{}
			}
			params[n.Region][f.Parameter] = f.Value()
		}
		if n.Role == cluster.RoleApp {
			if params[n.Region] == nil {
				params[n.Region] = map[string]string{}
			}
			params[n.Region][render.AppImageParameter(c.plan.Config)] = AppImage(c.plan)
		}
	}
	for region := range secrets {
		cfg, err := c.awsConfig(region)
		if err != nil {
			return err
		}
		sm := secretsmanager.NewFromConfig(cfg)
		for _, s := range cluster.Secrets {
			pw, err := c.Secret(s)
			if err != nil {
				return err
			}
			name := aws.String(c.plan.Config.SecretName(s))
			_, err = sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: name, SecretString: aws.String(pw)})
			// The SDK retries a call that timed out, which the emulator
			// may have done all the same: then set the value.
			var exists *smtypes.ResourceExistsException
			if errors.As(err, &exists) {
				_, err = sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: name, SecretString: aws.String(pw)})
			}
			if err != nil {
				return fmt.Errorf("create secret %s in %s: %w", c.plan.Config.SecretName(s), region, err)
			}
		}
	}
	for region, ps := range params {
		if err := c.putParameters(ctx, region, ps); err != nil {
			return err
		}
	}
	if err := c.createBuckets(ctx); err != nil {
		return err
	}
	return c.ensureCerts(ctx)
}

// putParameters writes String parameters in region.
func (c *Cluster) putParameters(ctx context.Context, region string, ps map[string]string) error {
	cfg, err := c.awsConfig(region)
	if err != nil {
		return err
	}
	client := ssm.NewFromConfig(cfg)
	for name, value := range ps {
		_, err := client.PutParameter(ctx, &ssm.PutParameterInput{
			Name: aws.String(name), Value: aws.String(value), Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true),
		})
		if err != nil {
			return fmt.Errorf("put parameter %s in %s: %w", name, region, err)
		}
	}
	return nil
}

// BootStatuses reads every node's boot report (render.BootStatusParameter)
// from the emulator, by node name.
func (c *Cluster) BootStatuses(ctx context.Context) (map[string]string, error) {
	return c.nodeReports(ctx, render.BootStatusPath(c.plan.Config))
}

// VolumeStatuses reads every PostgreSQL node's data volume report
// (render.VolumeStatusParameter) from the emulator, by node name.
func (c *Cluster) VolumeStatuses(ctx context.Context) (map[string]string, error) {
	return c.nodeReports(ctx, render.VolumeStatusPath(c.plan.Config))
}

// nodeReports reads the parameters under path in every region, by their
// last name (the node's).
func (c *Cluster) nodeReports(ctx context.Context, path string) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	for _, r := range c.plan.Regions {
		cfg, err := c.awsConfig(r.Name)
		if err != nil {
			return nil, err
		}
		client := ssm.NewFromConfig(cfg)
		in := &ssm.GetParametersByPathInput{Path: aws.String(path)}
		for {
			page, err := client.GetParametersByPath(ctx, in)
			if err != nil {
				errs = append(errs, err)
				break
			}
			for _, p := range page.Parameters {
				name := aws.ToString(p.Name)
				out[name[strings.LastIndex(name, "/")+1:]] = aws.ToString(p.Value)
			}
			if aws.ToString(page.NextToken) == "" {
				break
			}
			in.NextToken = page.NextToken
		}
	}
	return out, errors.Join(errs...)
}

// awsProcs is the key of the AWS side's processes in state.Procs.
const awsProcs = "aws"

// startAWS starts the AWS side, waits until it answers, creates the
// secrets and parameters the nodes read, and pushes the app's image.
func (c *Cluster) startAWS(ctx context.Context, binary string, appImage *Image) error {
	if err := c.prepareAWS(); err != nil {
		return err
	}
	ps, err := startAll(c.awsLaunches(binary))
	if err := c.update(func(st *state) error { st.Procs[awsProcs] = ps; return nil }); err != nil {
		return err
	}
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.waitAWS(wctx); err != nil {
		return fmt.Errorf("the AWS side (logs/aws-*.log): %w", err)
	}
	if err := c.seedAWS(ctx); err != nil {
		return err
	}
	if appImage == nil {
		return nil
	}
	tr, err := c.awsTransport()
	if err != nil {
		return err
	}
	_, reg := awsAddrs(c.st.LinkNet)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, netip.AddrPortFrom(reg, 443).String())
	}
	c.logf("pushing the app's image to %s", AppImage(c.plan))
	return PushImage(ctx, appImage, AppImage(c.plan), tr)
}

// stopAWS stops the AWS side's processes.
func (c *Cluster) stopAWS(ctx context.Context) error {
	if !nsExists(awsNS) {
		return nil
	}
	return stopNS(ctx, awsNS, 5*time.Second)
}

// IMDSCommand is the pgha-local subcommand that serves the instance
// metadata service of a local cluster: `pgha-local imds --dir DIR --addr
// ADDR`, which calls RunIMDS. Up starts it in awsNS.
const IMDSCommand = "imds"

// RunIMDS serves the metadata of every node of the cluster in dir on addr
// until ctx ends: the user data is render.UserData, the bytes the CDK
// puts in the node's template.
func RunIMDS(ctx context.Context, dir, addr string) error {
	c, err := Open(dir)
	if err != nil {
		return err
	}
	s := &IMDS{Nodes: map[string]IMDSNode{}, AccessKeyID: "ASIALOCALPGHA", SecretAccessKey: "local", SessionToken: "local"}
	for _, n := range c.plan.Nodes {
		ud, err := render.UserData(c.plan, n)
		if err != nil {
			return err
		}
		s.Nodes[n.IP.String()] = IMDSNode{
			Name: n.Name, InstanceID: instanceID(n), Region: n.Region, Zone: n.AZ, IP: n.IP.String(),
			Role: "pgha-" + n.Name, UserData: ud,
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
