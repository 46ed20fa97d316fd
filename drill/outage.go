package drill

import (
	"time"
)

// Outage is what the writer saw of a fault.
type Outage struct {
	// Failed is the number of failed attempts that ended after the fault.
	Failed int
	// RTO is the time from the fault to the first acknowledged write among
	// the attempts that started after the first failed one; 0 when no
	// attempt failed.
	RTO time.Duration
	// Window is the time from the start of the first failed attempt to the
	// end of the first acknowledged write after it; 0 when none failed.
	Window time.Duration
	// Recovered is false when attempts failed and none succeeded after.
	Recovered bool
	// Outages counts the separate runs of failed attempts (a fault and its
	// heal may each interrupt writes).
	Outages int
	// Longest is the longest window, over every run of failures.
	Longest time.Duration
}

// Interrupted reports whether any write failed.
func (o Outage) Interrupted() bool { return o.Failed > 0 }

// Analyze measures the outage in attempts (in start order) caused by a
// fault injected at fault.
func Analyze(attempts []Attempt, fault time.Time) Outage {
	o := Outage{Recovered: true}
	var (
		failing   bool
		failStart time.Time
		first     = true
	)
	for _, a := range attempts {
		if a.End.Before(fault) {
			continue
		}
		if !a.Acked() {
			o.Failed++
			if !failing {
				failing, failStart = true, a.Start
				o.Outages++
				o.Recovered = false
			}
			continue
		}
		if !failing || a.Start.Before(failStart) {
			continue
		}
		failing = false
		o.Recovered = true
		w := a.End.Sub(failStart)
		o.Longest = max(o.Longest, w)
		if first {
			first = false
			o.RTO = a.End.Sub(fault)
			o.Window = w
		}
	}
	return o
}

// Acked returns the sequence numbers of the acknowledged attempts.
func Acked(attempts []Attempt) []int64 {
	var out []int64
	for _, a := range attempts {
		if a.Acked() {
			out = append(out, a.Seq)
		}
	}
	return out
}
