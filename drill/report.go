package drill

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Summary is every run of one drill.
type Summary struct {
	Drill   Drill
	Runs    int // runs that produced a result
	Errors  int // runs that could not be carried out
	RTOs    []time.Duration
	Windows []time.Duration
	Failed  []int // failed attempts per run
	Lost    []int
	// Rejoined counts the runs where the faulted node came back with the
	// leader's rows.
	Rejoined int
	// Met counts the runs that met every target.
	Met int
	// AppRequests and AppFailures add up every run's.
	AppRequests, AppFailures int
	// Timelines are "before→after" per run.
	Timelines []string
	// Figures are each run's Result.Figures, joined.
	Figures []string
}

// Summarize groups results by drill, in ds' order. errs counts the runs
// of each drill that failed to run.
func Summarize(ds []Drill, results []Result, errs map[string]int) []Summary {
	var out []Summary
	for _, d := range ds {
		s := Summary{Drill: d, Errors: errs[d.Name]}
		for _, r := range results {
			if r.Drill != d.Name {
				continue
			}
			s.Runs++
			s.RTOs = append(s.RTOs, r.Outage.RTO)
			s.Windows = append(s.Windows, r.Outage.Window)
			s.Failed = append(s.Failed, r.Outage.Failed)
			s.Lost = append(s.Lost, r.Lost())
			s.Timelines = append(s.Timelines, fmt.Sprintf("%d→%d", r.TimelineBefore, r.TimelineAfter))
			if len(r.Figures) > 0 {
				s.Figures = append(s.Figures, strings.Join(r.Figures, ", "))
			}
			if r.Rejoined {
				s.Rejoined++
			}
			if len(r.Violations(d.Targets)) == 0 {
				s.Met++
			}
			s.AppRequests += r.AppRequests
			s.AppFailures += r.AppFailures
		}
		if s.Runs > 0 || s.Errors > 0 {
			out = append(out, s)
		}
	}
	return out
}

// WriteTable prints the summaries as a markdown table.
func WriteTable(w io.Writer, sums []Summary) {
	fmt.Fprintln(w, "| fault | runs | RTO p50 [min–max] | failed-write window p50 [min–max] | failed writes p50 [max] | acknowledged writes lost | old leader rejoined | target | met |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, s := range sums {
		runs := fmt.Sprint(s.Runs)
		if s.Errors > 0 {
			runs += fmt.Sprintf(" (+%d errors)", s.Errors)
		}
		lost := 0
		for _, l := range s.Lost {
			lost += l
		}
		lostCell := fmt.Sprintf("%d", lost)
		if s.Runs > 1 {
			lostCell = fmt.Sprintf("%d in %d runs", lost, s.Runs)
		}
		target := s.Drill.Targets.String()
		if s.AppRequests > 0 {
			target += fmt.Sprintf(" (app: %d of %d failed)", s.AppFailures, s.AppRequests)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %d/%d | %s | %d/%d |\n",
			s.Drill.Name, runs, spread(s.RTOs), spread(s.Windows), countSpread(s.Failed),
			lostCell, s.Rejoined, s.Runs, target, s.Met, s.Runs)
	}
}

// WriteLegend prints what each drill does.
func WriteLegend(w io.Writer, sums []Summary) {
	for _, s := range sums {
		fmt.Fprintf(w, "- %s: %s; timelines %s\n", s.Drill.Name, s.Drill.Doc, strings.Join(s.Timelines, ", "))
		for i, f := range s.Figures {
			fmt.Fprintf(w, "  - run %d: %s\n", i+1, f)
		}
	}
}

// spread formats "p50 [min–max]", or "no interruption" when every value
// is 0.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if s[len(s)-1] == 0 {
		return "no interruption"
	}
	if len(s) == 1 {
		return fmtDur(s[0])
	}
	return fmt.Sprintf("%s [%s–%s]", fmtDur(Median(s)), fmtDur(s[0]), fmtDur(s[len(s)-1]))
}

func countSpread(ns []int) string {
	if len(ns) == 0 {
		return "–"
	}
	s := slices.Clone(ns)
	slices.Sort(s)
	if len(s) == 1 {
		return fmt.Sprint(s[0])
	}
	return fmt.Sprintf("%d [%d]", s[(len(s)-1)/2], s[len(s)-1])
}

// Median returns the median of sorted durations (the mean of the two
// middle ones for an even count).
func Median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// fmtDur prints a duration in seconds with one decimal.
func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.1f s", d.Seconds())
}
