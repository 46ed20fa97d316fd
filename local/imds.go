package local

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IMDSNode is what the metadata service answers one node.
type IMDSNode struct {
	Name       string // instance name, e.g. "euw3-pg1"
	InstanceID string // e.g. "i-0pghaeuw3pg1" (any string)
	Region     string
	Zone       string // availability zone name, e.g. "eu-west-3a"
	IP         string // private IPv4
	Role       string // instance profile role name, e.g. "pgha-euw3-pg1"
	UserData   []byte // exactly the bytes of the node's user data
}

// IMDS is EC2's instance metadata service, IMDSv2 only, for the local
// cluster's nodes, which reach it at 169.254.169.254:80. It tells them apart
// by the request's source address, since each node has its EC2 private IP.
//
// It follows AWS's rules for IMDSv2 ("IMDSv2 only (token required)"):
//   - PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds of 1
//     to 21600 (six hours) returns a session token; a missing or invalid TTL
//     is 400, and a PUT carrying X-Forwarded-For, i.e. one that went through
//     a proxy, is refused (403);
//   - every GET needs a live token in X-aws-ec2-metadata-token, and a token
//     is valid only on the instance it was issued to: otherwise 401;
//   - a path that does not exist, or empty user data, is 404.
//
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html
type IMDS struct {
	Nodes map[string]IMDSNode // by IP
	// Credentials are the fake instance-role credentials handed out (an AWS
	// emulator accepts any).
	AccessKeyID, SecretAccessKey, SessionToken string
	// Now is the clock that dates tokens and credentials.
	// Default: time.Now.
	Now func() time.Time

	mu     sync.Mutex
	tokens map[string]imdsToken // live tokens, by token
}

type imdsToken struct {
	ip      string // the source address it was issued to
	expires time.Time
}

const (
	imdsTokenHeader = "X-aws-ec2-metadata-token"
	imdsTTLHeader   = "X-aws-ec2-metadata-token-ttl-seconds"
	imdsMaxTTL      = 21600
)

// Handler serves the metadata of s.Nodes; a source address that is not a
// node's gets 404.
func (s *IMDS) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", s.issue)
	mux.HandleFunc("GET /latest/", s.get)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.Nodes[sourceIP(r)]; !ok {
			http.Error(w, "no instance at "+r.RemoteAddr, http.StatusNotFound)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// sourceIP is the address the request came from, never a header's.
func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	return ip.Unmap().String()
}

func (s *IMDS) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// issue answers PUT /latest/api/token.
func (s *IMDS) issue(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Forwarded-For") != "" {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(imdsTTLHeader))
	if err != nil || ttl < 1 || ttl > imdsMaxTTL {
		http.Error(w, imdsTTLHeader+" must be 1 to 21600", http.StatusBadRequest)
		return
	}
	tok := rand.Text()
	now := s.now()
	s.mu.Lock()
	if s.tokens == nil {
		s.tokens = map[string]imdsToken{}
	}
	for k, t := range s.tokens {
		if !now.Before(t.expires) {
			delete(s.tokens, k)
		}
	}
	s.tokens[tok] = imdsToken{ip: sourceIP(r), expires: now.Add(time.Duration(ttl) * time.Second)}
	s.mu.Unlock()
	w.Header().Set(imdsTTLHeader, strconv.Itoa(ttl))
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, tok)
}

// valid reports whether tok is live and was issued to ip.
func (s *IMDS) valid(tok, ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	return ok && t.ip == ip && s.now().Before(t.expires)
}

// get answers GET /latest/...: text, user data as bytes, or JSON documents.
func (s *IMDS) get(w http.ResponseWriter, r *http.Request) {
	ip := sourceIP(r)
	if !s.valid(r.Header.Get(imdsTokenHeader), ip) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	switch v := s.lookup(s.Nodes[ip], strings.TrimPrefix(r.URL.Path, "/latest")).(type) {
	case nil:
		http.NotFound(w, r)
	case string:
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, v)
	case []byte:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(v)
	default:
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}
}

// lookup is what node n finds at path (under /latest): a string, the user
// data's bytes, a JSON document, or nil where nothing is. Directories list
// their entries one a line, subdirectories with a trailing slash.
func (s *IMDS) lookup(n IMDSNode, path string) any {
	if strings.HasPrefix(path, "/meta-data/iam") && n.Role == "" {
		return nil // no instance profile
	}
	now := s.now().UTC()
	switch path {
	case "/":
		return "dynamic\nmeta-data\nuser-data"
	case "/user-data":
		if len(n.UserData) == 0 {
			return nil
		}
		return n.UserData
	case "/meta-data", "/meta-data/":
		return "hostname\niam/\ninstance-id\nlocal-hostname\nlocal-ipv4\nplacement/"
	case "/meta-data/instance-id":
		return n.InstanceID
	case "/meta-data/local-ipv4":
		return n.IP
	case "/meta-data/hostname", "/meta-data/local-hostname":
		return privateDNSName(n)
	case "/meta-data/placement", "/meta-data/placement/":
		return "availability-zone\nregion"
	case "/meta-data/placement/region":
		return n.Region
	case "/meta-data/placement/availability-zone":
		return n.Zone
	case "/meta-data/iam", "/meta-data/iam/":
		return "info\nsecurity-credentials/"
	case "/meta-data/iam/info":
		return map[string]string{
			"Code":               "Success",
			"LastUpdated":        now.Format(time.RFC3339),
			"InstanceProfileArn": "arn:aws:iam::" + awsAccount + ":instance-profile/" + n.Role,
			"InstanceProfileId":  "AIPALOCAL" + strings.ToUpper(strings.ReplaceAll(n.Name, "-", "")),
		}
	case "/meta-data/iam/security-credentials", "/meta-data/iam/security-credentials/":
		return n.Role
	case "/meta-data/iam/security-credentials/" + n.Role:
		return map[string]string{
			"Code":            "Success",
			"LastUpdated":     now.Format(time.RFC3339),
			"Type":            "AWS-HMAC",
			"AccessKeyId":     s.AccessKeyID,
			"SecretAccessKey": s.SecretAccessKey,
			"Token":           s.SessionToken,
			"Expiration":      now.Add(6 * time.Hour).Format(time.RFC3339),
		}
	case "/dynamic", "/dynamic/":
		return "instance-identity/"
	case "/dynamic/instance-identity", "/dynamic/instance-identity/":
		return "document"
	case "/dynamic/instance-identity/document":
		return map[string]string{
			"accountId":        awsAccount,
			"architecture":     ec2Architecture(runtime.GOARCH),
			"availabilityZone": n.Zone,
			"imageId":          "ami-0pghalocal",
			"instanceId":       n.InstanceID,
			"instanceType":     "t4g.medium",
			"privateIp":        n.IP,
			"region":           n.Region,
			"version":          "2017-09-30",
		}
	}
	return nil
}

// privateDNSName is EC2's IP-based private hostname,
// ip-10-11-3-10.eu-west-3.compute.internal (ec2.internal in us-east-1).
func privateDNSName(n IMDSNode) string {
	domain := n.Region + ".compute.internal"
	if n.Region == "us-east-1" {
		domain = "ec2.internal"
	}
	return "ip-" + strings.ReplaceAll(n.IP, ".", "-") + "." + domain
}

// ec2Architecture is EC2's name of a Go architecture.
func ec2Architecture(goarch string) string {
	if goarch == "amd64" {
		return "x86_64"
	}
	return goarch
}
