package drill

import (
	"strings"
	"testing"
	"time"
)

func TestWriteTable(t *testing.T) {
	d, err := Find([]string{"leader-kill", "etcd-quorum"})
	if err != nil {
		t.Fatal(err)
	}
	s := time.Second
	results := []Result{
		{Drill: "leader-kill", Acks: 1, Rejoined: true, Check: Check{Identical: true}, TimelineBefore: 1, TimelineAfter: 2,
			Outage: Outage{Failed: 900, RTO: 20 * s, Window: 19 * s, Recovered: true}},
		{Drill: "leader-kill", Acks: 1, Rejoined: true, Check: Check{Identical: true}, TimelineBefore: 2, TimelineAfter: 3,
			Outage: Outage{Failed: 950, RTO: 22 * s, Window: 21 * s, Recovered: true}},
		{Drill: "leader-kill", Acks: 1, Rejoined: true, Check: Check{Identical: true}, TimelineBefore: 3, TimelineAfter: 4,
			Outage: Outage{Failed: 980, RTO: 24 * s, Window: 23 * s, Recovered: true}},
		{Drill: "etcd-quorum", Acks: 1, Rejoined: true, Check: Check{Identical: true}, Outage: Outage{Recovered: true}},
	}
	var b strings.Builder
	WriteTable(&b, Summarize(d, results, map[string]int{"etcd-quorum": 1}))
	got := b.String()
	for _, want := range []string{
		"| leader-kill | 3 | 22.0 s [20.0 s–24.0 s] | 21.0 s [19.0 s–23.0 s] | 950 [980] | 0 in 3 runs | 3/3 | RTO ≤ 23.0 s | 2/3 |",
		"| etcd-quorum | 1 (+1 errors) | no interruption | no interruption | 0 | 0 | 1/1 | no failed write | 1/1 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks\n%s\ngot\n%s", want, got)
		}
	}
}

func TestFindRejectsUnknownFault(t *testing.T) {
	if _, err := Find([]string{"leader-kill", "meteor"}); err == nil || !strings.Contains(err.Error(), "meteor") {
		t.Errorf("Find(meteor) = %v, want an error naming it", err)
	}
}

func TestWitnessConfigIsValid(t *testing.T) {
	if err := WitnessConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
