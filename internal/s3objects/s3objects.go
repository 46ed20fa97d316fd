// Package s3objects reads objects of one S3 bucket for the health checker
// (healthcheck.ObjectReader), with the AWS SDK: the Lambda's client on
// AWS, the local cluster's against its S3 server.
package s3objects

import (
	"context"
	"errors"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Bucket is one bucket, read with Client.
type Bucket struct {
	Client *s3.Client
	Name   string
}

// ReadObject returns the object's body; the caller closes it.
func (b Bucket) ReadObject(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := b.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.Name), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	return out.Body, nil
}

// NotFound reports whether err says the object does not exist.
func (b Bucket) NotFound(err error) bool {
	var noKey *types.NoSuchKey
	return errors.As(err, &noKey)
}
