package local

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IMDSNode is what the metadata service answers one node.
type IMDSNode struct {
	Name       string // instance name, e.g. "euw3-pg1"
	InstanceID string
	Region     string
	Zone       string // availability zone, e.g. "eu-west-3a"
	IP         string // private IPv4
	Role       string // the instance profile's role name
	UserData   []byte // exactly the bytes of the node's user data
}

// IMDS is EC2's instance metadata service, IMDSv2 only, for the local
// cluster's nodes, told apart by the request's source address (each node
// has its EC2 private IP). It follows AWS's rules: a session token from
// PUT /latest/api/token with a TTL of 1 to 21600 s, required on every GET
// and valid only for the address it was issued to; no token through a
// proxy (X-Forwarded-For).
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html
type IMDS struct {
	Nodes map[string]IMDSNode // by IP
	// The instance role's credentials handed out (the emulator takes any).
	AccessKeyID, SecretAccessKey, SessionToken string
	// Now is the clock; default time.Now.
	Now func() time.Time

	mu     sync.Mutex
	tokens map[string]imdsToken
}

type imdsToken struct {
	ip      string
	expires time.Time
}

func (s *IMDS) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Handler serves the metadata service.
func (s *IMDS) Handler() http.Handler {
	return http.HandlerFunc(s.serve)
}

func (s *IMDS) serve(w http.ResponseWriter, r *http.Request) {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "bad remote address", http.StatusBadRequest)
		return
	}
	n, ok := s.Nodes[ip]
	if !ok {
		http.Error(w, "no instance at "+ip, http.StatusNotFound)
		return
	}
	if r.URL.Path == "/latest/api/token" {
		s.issue(w, r, ip)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !s.valid(r.Header.Get("X-aws-ec2-metadata-token"), ip) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	body, ok := s.answer(n, strings.TrimPrefix(r.URL.Path, "/latest"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	if r.URL.Path == "/latest/user-data" {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Write(body)
}

// issue answers PUT /latest/api/token.
func (s *IMDS) issue(w http.ResponseWriter, r *http.Request, ip string) {
	if r.Method != http.MethodPut {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("X-Forwarded-For") != "" {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
	if err != nil || ttl < 1 || ttl > 21600 {
		http.Error(w, "X-aws-ec2-metadata-token-ttl-seconds must be 1 to 21600", http.StatusBadRequest)
		return
	}
	b := make([]byte, 32)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	s.mu.Lock()
	if s.tokens == nil {
		s.tokens = map[string]imdsToken{}
	}
	now := s.now()
	for k, t := range s.tokens {
		if now.After(t.expires) {
			delete(s.tokens, k)
		}
	}
	s.tokens[tok] = imdsToken{ip: ip, expires: now.Add(time.Duration(ttl) * time.Second)}
	s.mu.Unlock()
	w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(ttl))
	w.Write([]byte(tok))
}

func (s *IMDS) valid(tok, ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	return ok && t.ip == ip && !s.now().After(t.expires)
}

// answer is the body at path (under /latest) for node n.
func (s *IMDS) answer(n IMDSNode, path string) ([]byte, bool) {
	now := s.now().UTC()
	arch := map[string]string{"amd64": "x86_64", "arm64": "arm64"}[runtime.GOARCH]
	js := func(v any) ([]byte, bool) {
		b, _ := json.MarshalIndent(v, "", "  ")
		return b, true
	}
	hostname := "ip-" + strings.ReplaceAll(n.IP, ".", "-") + "." + n.Region + ".compute.internal"
	switch path {
	case "/user-data":
		return n.UserData, len(n.UserData) > 0
	case "/meta-data", "/meta-data/":
		return []byte("hostname\niam/\ninstance-id\nlocal-hostname\nlocal-ipv4\nplacement/"), true
	case "/meta-data/instance-id":
		return []byte(n.InstanceID), true
	case "/meta-data/local-ipv4":
		return []byte(n.IP), true
	case "/meta-data/hostname", "/meta-data/local-hostname":
		return []byte(hostname), true
	case "/meta-data/placement", "/meta-data/placement/":
		return []byte("availability-zone\nregion"), true
	case "/meta-data/placement/region":
		return []byte(n.Region), true
	case "/meta-data/placement/availability-zone":
		return []byte(n.Zone), true
	case "/meta-data/iam", "/meta-data/iam/":
		return []byte("info\nsecurity-credentials/"), true
	case "/meta-data/iam/info":
		return js(map[string]string{
			"Code": "Success", "LastUpdated": now.Format(time.RFC3339),
			"InstanceProfileArn": "arn:aws:iam::" + awsAccount + ":instance-profile/" + n.Role,
			"InstanceProfileId":  "AIPALOCAL" + strings.ToUpper(strings.ReplaceAll(n.Name, "-", "")),
		})
	case "/meta-data/iam/security-credentials", "/meta-data/iam/security-credentials/":
		return []byte(n.Role), true
	case "/meta-data/iam/security-credentials/" + n.Role:
		return js(map[string]string{
			"Code": "Success", "LastUpdated": now.Format(time.RFC3339), "Type": "AWS-HMAC",
			"AccessKeyId": s.AccessKeyID, "SecretAccessKey": s.SecretAccessKey, "Token": s.SessionToken,
			"Expiration": now.Add(6 * time.Hour).Format(time.RFC3339),
		})
	case "/dynamic/instance-identity/document":
		return js(map[string]string{
			"region": n.Region, "availabilityZone": n.Zone, "instanceId": n.InstanceID, "privateIp": n.IP,
			"accountId": awsAccount, "architecture": arch, "imageId": "ami-pghalocal", "instanceType": "t4g.medium",
		})
	}
	return nil, false
}
