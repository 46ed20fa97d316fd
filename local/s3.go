package local

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/pgha/pgha/healthcheck"
	"github.com/pgha/pgha/internal/s3objects"
)

// S3Client returns an S3 client for data region region's S3 server, seen
// from the root namespace (by address, so path-style).
func (c *Cluster) S3Client(region string) (*s3.Client, error) {
	a, ok := c.net().s3Addrs()[region]
	if !ok {
		return nil, fmt.Errorf("no S3 server for %s: it is not a data region of the cluster", region)
	}
	cfg, err := c.awsConfig(region)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String("https://" + a.String())
		o.UsePathStyle = true
		o.HTTPClient = &http.Client{Transport: cfg.HTTPClient.(*http.Client).Transport, Timeout: 2 * time.Minute}
	}), nil
}

// BackupBucket is data region region's backup bucket.
func (c *Cluster) BackupBucket(region string) string {
	return c.plan.Config.BackupBucket(awsAccount, region)
}

// createBuckets creates what the stacks create on AWS: each data region's
// backup bucket, versioned.
func (c *Cluster) createBuckets(ctx context.Context) error {
	for _, r := range c.plan.DataRegions() {
		client, err := c.S3Client(r.Name)
		if err != nil {
			return err
		}
		bucket := aws.String(c.BackupBucket(r.Name))
		_, err = client.CreateBucket(ctx, &s3.CreateBucketInput{
			Bucket:                    bucket,
			CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(r.Name)},
		})
		var owned *s3types.BucketAlreadyOwnedByYou
		if err != nil && !errors.As(err, &owned) {
			return fmt.Errorf("create bucket %s in %s: %w", *bucket, r.Name, err)
		}
		_, err = client.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
			Bucket:                  bucket,
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled},
		})
		if err != nil {
			return fmt.Errorf("version bucket %s in %s: %w", *bucket, r.Name, err)
		}
	}
	return nil
}

// cutS3 drops (cut) or routes again the packets to region's S3 server in
// the core router, which every node's traffic to it crosses.
func (c *Cluster) cutS3(ctx context.Context, region string, cut bool) error {
	a := netip.PrefixFrom(c.net().s3Addrs()[region], 32).String()
	if cut {
		return ip(ctx, "-n", coreNS, "route", "replace", "blackhole", a)
	}
	_, awsEnd := linkAddrs(c.st.LinkNet, c.net().awsLinkIndex())
	return ip(ctx, "-n", coreNS, "route", "replace", a, "via", awsEnd.Addr().String())
}

// NewestArchived returns the newest WAL segment file in data region
// region's repository (pgBackRest's archive/<stanza>/<db>/<timeline and
// log>/ folders, their files named after the segment), or "" when it
// holds none.
func (c *Cluster) NewestArchived(ctx context.Context, region string) (string, error) {
	client, err := c.S3Client(region)
	if err != nil {
		return "", err
	}
	cfg := c.plan.Config
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(c.BackupBucket(region)),
		Prefix: aws.String(cfg.BackupPrefix() + "/archive/" + cfg.Stanza() + "/"),
	}
	newest := ""
	for p := s3.NewListObjectsV2Paginator(client, in); p.HasMorePages(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", fmt.Errorf("list the archive of %s: %w", region, err)
		}
		for _, o := range page.Contents {
			name := path.Base(aws.ToString(o.Key))
			if seg, _, ok := strings.Cut(name, "-"); ok && len(seg) == 24 && seg > newest {
				newest = seg
			}
		}
	}
	return newest, nil
}

// NewestBackup returns when the newest backup in data region region's
// repository finished (zero: none), read as the health checker reads it.
func (c *Cluster) NewestBackup(ctx context.Context, region string) (time.Time, error) {
	client, err := c.S3Client(region)
	if err != nil {
		return time.Time{}, err
	}
	cfg := c.plan.Config
	return healthcheck.RepositoryReader{
		Objects: s3objects.Bucket{Client: client, Name: c.BackupBucket(region)},
		Prefix:  cfg.BackupPrefix(), Stanza: cfg.Stanza(),
	}.NewestBackup(ctx)
}
