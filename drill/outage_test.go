package drill

import (
	"errors"
	"testing"
	"time"
)

// attempts builds attempts from a pattern: one character per 100 ms slot,
// '+' acknowledged, '-' failed; each attempt lasts 50 ms.
func attempts(t0 time.Time, pattern string) []Attempt {
	var out []Attempt
	for i, c := range pattern {
		start := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		a := Attempt{Seq: int64(i + 1), Start: start, End: start.Add(50 * time.Millisecond)}
		if c == '-' {
			a.Err = errors.New("failed")
		}
		out = append(out, a)
	}
	return out
}

func TestAnalyze(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	tests := []struct {
		name    string
		pattern string
		fault   time.Duration // after t0
		want    Outage
	}{
		{"no failure", "++++++", ms(200), Outage{Recovered: true}},
		{"one outage", "++---++", ms(150), Outage{Failed: 3, RTO: ms(400), Window: ms(350), Recovered: true, Outages: 1, Longest: ms(350)}},
		{"never recovers", "++---", ms(150), Outage{Failed: 3, Recovered: false, Outages: 1}},
		{"failures before the fault are ignored", "--+++-+", ms(200), Outage{Failed: 1, RTO: ms(450), Window: ms(150), Recovered: true, Outages: 1, Longest: ms(150)}},
		{"second, longer outage after the heal", "+-++---+", ms(50), Outage{Failed: 4, RTO: ms(200), Window: ms(150), Recovered: true, Outages: 2, Longest: ms(350)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Analyze(attempts(t0, tt.pattern), t0.Add(tt.fault))
			if got != tt.want {
				t.Errorf("Analyze(%q) = %+v, want %+v", tt.pattern, got, tt.want)
			}
		})
	}
}

func TestAcked(t *testing.T) {
	got := Acked(attempts(time.Now(), "+-+-+"))
	want := []int64{1, 3, 5}
	if len(got) != len(want) {
		t.Fatalf("Acked = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Acked = %v, want %v", got, want)
		}
	}
}

func TestViolations(t *testing.T) {
	ok := Result{
		Drill: "leader-kill", Subject: "pg1", Acks: 100, Rejoined: true,
		Outage: Outage{Failed: 10, RTO: 20 * time.Second, Window: 19 * time.Second, Recovered: true, Outages: 1},
		Check:  Check{Identical: true},
	}
	tests := []struct {
		name    string
		mutate  func(*Result)
		targets Targets
		want    int
	}{
		{"meets the targets", func(*Result) {}, Targets{RTO: 23 * time.Second}, 0},
		{"rejects a slow failover", func(r *Result) { r.Outage.RTO = 24 * time.Second }, Targets{RTO: 23 * time.Second}, 1},
		{"rejects a lost write", func(r *Result) { r.Check.Lost = []int64{42} }, Targets{}, 1},
		{"rejects diverging nodes", func(r *Result) { r.Check.Identical = false }, Targets{}, 1},
		{"rejects an old leader that did not rejoin", func(r *Result) { r.Rejoined = false }, Targets{}, 1},
		{"rejects writes that never came back", func(r *Result) { r.Outage.Recovered = false }, Targets{}, 1},
		{"rejects an interruption where none is allowed", func(*Result) {}, Targets{NoInterruption: true}, 1},
		{"rejects a long switchover window", func(*Result) {}, Targets{Window: 4 * time.Second}, 1},
		{"rejects app failures", func(r *Result) { r.AppRequests, r.AppFailures = 10, 1 }, Targets{NoAppFailure: true}, 1},
		{"rejects an app drill without app requests", func(*Result) {}, Targets{NoAppFailure: true}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.mutate(&r)
			if got := r.Violations(tt.targets); len(got) != tt.want {
				t.Errorf("Violations = %q, want %d", got, tt.want)
			}
		})
	}
}
