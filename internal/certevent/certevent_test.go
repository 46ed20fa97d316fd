package certevent

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/pgha/pgha/cluster"
)

// TestConfigRoundTrip: what the construct serializes, the Lambda parses
// back to the same configuration, witness and pinned images included.
func TestConfigRoundTrip(t *testing.T) {
	witness := cluster.Default()
	witness.Witness = &cluster.Witness{Name: "eu-central-1", CIDR: "10.13.0.0/16"}
	witness.Regions[0].Etcd = 1
	witness.Instances.Images = map[string]string{"eu-west-3": "ami-0123456789abcdef0"}
	witness.TLS.Rotation = 3
	for name, c := range map[string]cluster.Config{"default": cluster.Default(), "witness": witness} {
		t.Run(name, func(t *testing.T) {
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			b, err := Config(c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := cluster.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("round trip changed the configuration:\n got %+v\nwant %+v", got, c)
			}
			in, err := RenewInput(c)
			if err != nil {
				t.Fatal(err)
			}
			var r Renew
			if err := json.Unmarshal(in, &r); err != nil || r.Action != ActionRenew || string(r.Config) != string(b) {
				t.Errorf("renew input %s: %+v, %v", in, r, err)
			}
		})
	}
}
