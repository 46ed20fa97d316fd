// Package cluster is pgha's model of a cluster: the configuration read from
// the `pgha` key of cdk.json's context, its validation, and the plan that
// places every node (name, role, region, availability zone, private IP)
// before anything boots.
//
// The package imports no CDK and no AWS SDK: the CDK stacks, the renderers
// and the local cluster all build on the same plan, so what runs locally is
// what EC2 runs.
//
// # Addressing
//
// Each region's VPC CIDR (a /16 to a /20) is cut into /24 subnets the way
// the CDK's ec2.Vpc allocates them for three availability zones: the public
// subnets first (indexes 0, 1, 2), then the private ones (3, 4, 5). Nodes
// are spread over the three zones in order of their number within the
// region, and each role has its own band of host addresses in a subnet:
//
//	postgres  .10 - .19   private subnet
//	etcd      .20 - .29   private subnet
//	haproxy   .30 - .39   private subnet
//	app       .40 - .49   public subnet
//
// So in the default eu-west-3 (10.11.0.0/16) pg1 is 10.11.3.10 (zone a),
// pg2 is 10.11.4.10 (zone b), etcd1 10.11.3.20 and app1 10.11.0.40.
// Names are numbered across the whole cluster in region order: pg1, pg2 in
// the primary region, pg3 in the next.
package cluster
