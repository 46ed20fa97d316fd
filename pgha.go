// Command pgha is the CDK app: it reads the `pgha` configuration from the
// context (cdk.json), validates it once through the cluster model, and
// creates one stack per region, the later regions first so that each
// earlier region can own its peering with them.
//
// `cdk synth` / `cdk deploy --all` run it through cdk.json; run directly
// (`go run .`) it reads cdk.json's context itself and writes cdk.out/.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/stacks"
)

// appOptions is what the app takes from its environment.
type appOptions struct {
	// Context replaces cdk.json's context when the CLI does not pass one
	// (CDK_CONTEXT_JSON); nil leaves the context to the CLI.
	Context map[string]any
	// Outdir is the cloud assembly directory, "" to let the CLI decide
	// (CDK_OUTDIR).
	Outdir string
	// Account is the AWS account, "" for region-only stacks.
	Account string
	// SourceDir is the repository root, the app image's build context.
	SourceDir string
}

func main() {
	err := run(os.Getenv, os.Stderr)
	jsii.Close()
	if err != nil {
		os.Exit(1)
	}
}

func run(getenv func(string) string, stderr io.Writer) error {
	opts := appOptions{Account: getenv("CDK_DEFAULT_ACCOUNT"), SourceDir: "."}
	if getenv("CDK_OUTDIR") == "" {
		opts.Outdir = "cdk.out"
	}
	if getenv("CDK_CONTEXT_JSON") == "" {
		ctx, err := readContext("cdk.json")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return err
		}
		opts.Context = ctx
	}
	app, _, err := newApp(opts)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return err
	}
	app.Synth(nil)
	return nil
}

// readContext returns the "context" object of a cdk.json file.
func readContext(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CDK context: %w", err)
	}
	var f struct {
		Context map[string]any `json:"context"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("read CDK context from %s: %w", path, err)
	}
	return f.Context, nil
}

// newApp validates the configuration and creates the app with one stack
// per region, in plan order (primary first), with cdk-nag's AwsSolutions
// checks on every stack.
func newApp(opts appOptions) (awscdk.App, []*stacks.RegionStack, error) {
	props := &awscdk.AppProps{}
	if opts.Context != nil {
		props.Context = &opts.Context
	}
	if opts.Outdir != "" {
		props.Outdir = jsii.String(opts.Outdir)
	}
	app := awscdk.NewApp(props)
	// The backup buckets' access logs are delivered under a bucket
	// policy, not the legacy LogDeliveryWrite ACL (cfn-lint W3045).
	app.Node().SetContext(jsii.String("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy"), true)
	cfg, err := cluster.FromContext(app.Node().TryGetContext(jsii.String(cluster.ContextKey)))
	if err != nil {
		return nil, nil, err
	}
	plan, err := cluster.NewPlan(cfg)
	if err != nil {
		return nil, nil, err
	}
	src, err := filepath.Abs(opts.SourceDir)
	if err != nil {
		return nil, nil, err
	}
	var account *string
	if opts.Account != "" {
		account = jsii.String(opts.Account)
	}

	// Later regions first: each stack owns the peering with the regions
	// after it, so it needs their stacks, and deploys after them.
	all := make([]*stacks.RegionStack, len(plan.Regions))
	for i := len(plan.Regions) - 1; i >= 0; i-- {
		region := plan.Regions[i].Name
		name := stacks.StackName(cfg, region)
		all[i] = stacks.NewRegionStack(app, name, &stacks.RegionStackProps{
			StackProps: awscdk.StackProps{
				StackName: jsii.String(name),
				Env:       &awscdk.Environment{Account: account, Region: jsii.String(region)},
			},
			Plan:         plan,
			Region:       region,
			Peers:        all[i+1:],
			AppSourceDir: src,
		})
	}
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	return app, all, nil
}
