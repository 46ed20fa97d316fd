// Package backup holds a data region's backup bucket: pgBackRest's
// repository of that region (see render/pgbackrest.go).
package backup

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/nag"
)

// BucketProps configures a Bucket.
type BucketProps struct {
	// Plan is the cluster's plan. Required.
	Plan *cluster.Plan
	// Region is the data region whose bucket this is: the stack's.
	// Required.
	Region string
}

// Bucket is a data region's backup bucket, named
// cluster.Config.BackupBucket (the nodes work the name out themselves):
// encrypted (SSE-S3), public access blocked, TLS 1.2 or later only,
// versioned, kept when the stack is deleted. pgBackRest expires backups
// itself (backup.retentionDays); the lifecycle keeps what it deletes,
// or anyone else overwrites or deletes, as noncurrent versions for
// retentionDays more, and clears unfinished uploads. Server access logs
// go to a bucket of their own.
type Bucket struct {
	constructs.Construct
	// Bucket is the backup bucket, construct ID "Bucket".
	Bucket awss3.Bucket
	// Logs is its server access log bucket, construct ID "AccessLogs".
	Logs awss3.Bucket
}

// NewBucket creates the region's backup bucket.
func NewBucket(scope constructs.Construct, id string, props *BucketProps) *Bucket {
	this := constructs.NewConstruct(scope, &id)
	cfg := props.Plan.Config
	days := float64(cfg.Backup.RetentionDays)
	logs := awss3.NewBucket(this, jsii.String("AccessLogs"), &awss3.BucketProps{
		Encryption:        awss3.BucketEncryption_S3_MANAGED,
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL:        jsii.Bool(true),
		MinimumTLSVersion: jsii.Number(1.2),
		RemovalPolicy:     awscdk.RemovalPolicy_RETAIN,
		LifecycleRules:    &[]*awss3.LifecycleRule{{Expiration: awscdk.Duration_Days(jsii.Number(90))}},
	})
	nag.Suppress(logs, "AwsSolutions-S1", "This is the backup bucket's server access log bucket: logging its own access would recurse.")
	bucket := awss3.NewBucket(this, jsii.String("Bucket"), &awss3.BucketProps{
		BucketName:             jsii.String(cfg.BackupBucket(*awscdk.Aws_ACCOUNT_ID(), props.Region)),
		Encryption:             awss3.BucketEncryption_S3_MANAGED,
		BlockPublicAccess:      awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL:             jsii.Bool(true),
		MinimumTLSVersion:      jsii.Number(1.2),
		Versioned:              jsii.Bool(true),
		RemovalPolicy:          awscdk.RemovalPolicy_RETAIN,
		ServerAccessLogsBucket: logs,
		ServerAccessLogsPrefix: jsii.String(cfg.BackupPrefix() + "/"),
		LifecycleRules: &[]*awss3.LifecycleRule{{
			Id:                                  jsii.String("pgha-retention"),
			NoncurrentVersionExpiration:         awscdk.Duration_Days(jsii.Number(days)),
			AbortIncompleteMultipartUploadAfter: awscdk.Duration_Days(jsii.Number(1)),
			ExpiredObjectDeleteMarker:           jsii.Bool(true),
		}},
	})
	return &Bucket{Construct: this, Bucket: bucket, Logs: logs}
}

// GrantRepository lets role use every data region's repository: list the
// cluster's prefix (cluster.Config.BackupPrefix) and read, write and
// delete under it, what pgBackRest's archive-push, archive-get, backup,
// expire and restore do; nothing else in the buckets. The buckets are
// named, not referenced: each is in its own region's stack.
func GrantRepository(role awsiam.IRole, p *cluster.Plan) {
	var buckets, objects []*string
	for _, r := range p.DataRegions() {
		arn := fmt.Sprintf("arn:%s:s3:::%s", *awscdk.Aws_PARTITION(), p.Config.BackupBucket(*awscdk.Aws_ACCOUNT_ID(), r.Name))
		buckets = append(buckets, jsii.String(arn))
		objects = append(objects, jsii.String(arn+"/"+p.Config.BackupPrefix()+"/*"))
	}
	role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("s3:ListBucket"),
		Resources: &buckets,
		Conditions: &map[string]any{
			"StringLike": map[string]any{"s3:prefix": []string{p.Config.BackupPrefix(), p.Config.BackupPrefix() + "/*"}},
		},
	}))
	role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"),
		Resources: &objects,
	}))
	nag.Suppress(role, "AwsSolutions-IAM5",
		"pgBackRest writes and expires files of its own naming (WAL segments, backup labels) under the cluster's prefix of each backup bucket; the wildcard is that prefix.",
		objectFindings(p)...)
}

// objectFindings are how cdk-nag names GrantRepository's object ARNs.
func objectFindings(p *cluster.Plan) []string {
	var out []string
	for _, r := range p.DataRegions() {
		out = append(out, "Resource::arn:<AWS::Partition>:s3:::"+p.Config.BackupBucket("<AWS::AccountId>", r.Name)+"/"+p.Config.BackupPrefix()+"/*")
	}
	return out
}
