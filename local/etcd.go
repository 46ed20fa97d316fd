package local

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/render"
)

// ReplaceEtcdMember loses etcd node's data as a lost disk would (etcd
// stopped, its data directory emptied), then runs the node's own
// render.EtcdRejoinScript in it, as an operator does on EC2: the member is
// removed and added again under a new ID, and copies the cluster's data
// from the others. It returns what the script printed.
func (c *Cluster) ReplaceEtcdMember(ctx context.Context, node string) (string, error) {
	n, err := c.node(node)
	if err != nil {
		return "", err
	}
	if n.Role != cluster.RoleEtcd {
		return "", fmt.Errorf("%s is a %s node, not an etcd member", node, n.Role)
	}
	lose := fmt.Sprintf("systemctl stop %s && find %s -mindepth 1 -delete", render.EtcdUnit, render.EtcdDataDir)
	if _, err := c.Exec(ctx, node, "/bin/sh", "-c", lose); err != nil {
		return "", err
	}
	c.logf("%s: etcd stopped, %s emptied", node, render.EtcdDataDir)
	out, err := c.Exec(ctx, node, render.EtcdRejoinScript)
	return strings.TrimSpace(string(out)), err
}

// EtcdMember is one member of etcd's member list.
type EtcdMember struct {
	ID         string   `json:"id"` // hexadecimal, as etcdctl prints it
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
}

// EtcdMembers returns etcd's member list as etcd node's own member serves
// it, after checking that member's health (etcdctl endpoint health: a
// write committed through it).
func (c *Cluster) EtcdMembers(ctx context.Context, node string) ([]EtcdMember, error) {
	ctl := []string{"etcdctl", "--endpoints", fmt.Sprintf("https://127.0.0.1:%d", cluster.PortEtcdClient),
		"--cacert", render.CAFile, "--cert", render.CertFile, "--key", render.KeyFile}
	if _, err := c.Exec(ctx, node, append(ctl, "endpoint", "health")...); err != nil {
		return nil, err
	}
	out, err := c.Exec(ctx, node, append(ctl, "member", "list", "-w", "json")...)
	if err != nil {
		return nil, err
	}
	var list struct {
		Members []struct {
			ID         uint64   `json:"ID"`
			Name       string   `json:"name"`
			PeerURLs   []string `json:"peerURLs"`
			ClientURLs []string `json:"clientURLs"`
		} `json:"members"`
	}
	// etcdctl's client may log warnings (JSON lines too) before the list.
	if i := bytes.Index(out, []byte(`{"header"`)); i >= 0 {
		out = out[i:]
	}
	if err := json.NewDecoder(bytes.NewReader(out)).Decode(&list); err != nil {
		return nil, fmt.Errorf("etcd member list on %s: %w", node, err)
	}
	members := make([]EtcdMember, len(list.Members))
	for i, m := range list.Members {
		members[i] = EtcdMember{ID: fmt.Sprintf("%x", m.ID), Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs}
	}
	return members, nil
}
