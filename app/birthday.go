package main

import (
	"errors"
	"fmt"
	"time"
)

// Domain errors. The handlers map them to HTTP statuses in writeError.
var (
	ErrInvalidUsername = errors.New("username must be 1 to 255 letters A-Z or a-z")
	ErrInvalidDate     = errors.New("dateOfBirth must be a real date in YYYY-MM-DD format")
	ErrDateNotPast     = errors.New("dateOfBirth must be before today")
	ErrNotFound        = errors.New("user not found")
)

// dateLayout is the only accepted form of a date of birth.
const dateLayout = "2006-01-02"

// checkUsername returns ErrInvalidUsername unless name is 1 to 255 ASCII
// letters.
func checkUsername(name string) error {
	if len(name) < 1 || len(name) > 255 {
		return ErrInvalidUsername
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return ErrInvalidUsername
		}
	}
	return nil
}

// parseDateOfBirth parses a strict YYYY-MM-DD date that must be before today.
// The result is midnight UTC of that date.
func parseDateOfBirth(s string, today time.Time) (time.Time, error) {
	d, err := time.Parse(dateLayout, s)
	// The round trip makes "strict" not depend on time.Parse's leniency.
	// Year 0 does not exist in the Gregorian calendar.
	if err != nil || d.Format(dateLayout) != s || d.Year() < 1 {
		return time.Time{}, fmt.Errorf("%w, got %q", ErrInvalidDate, s)
	}
	if !d.Before(today) {
		return time.Time{}, fmt.Errorf("%w (%s), got %s", ErrDateNotPast, today.Format(dateLayout), s)
	}
	return d, nil
}

// dateIn returns midnight UTC of the calendar date that t falls on in loc:
// "today" is t's date where the service is said to be.
func dateIn(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// daysUntilBirthday returns the number of days from today to the next
// birthday of someone born on dob, 0 on the birthday itself. Both are
// midnight UTC. Someone born on 29 February has a birthday on 28 February
// in non-leap years.
func daysUntilBirthday(dob, today time.Time) int {
	next := birthdayIn(dob, today.Year())
	if next.Before(today) {
		next = birthdayIn(dob, today.Year()+1)
	}
	return int(next.Sub(today).Hours()) / 24
}

// birthdayIn returns the birthday of someone born on dob in the given year.
func birthdayIn(dob time.Time, year int) time.Time {
	m, d := dob.Month(), dob.Day()
	if m == time.February && d == 29 && !isLeap(year) {
		d = 28
	}
	return time.Date(year, m, d, 0, 0, 0, 0, time.UTC)
}

func isLeap(year int) bool {
	return year%4 == 0 && (year%100 != 0 || year%400 == 0)
}

// greeting is the message GET /hello answers with.
func greeting(username string, days int) string {
	switch days {
	case 0:
		return fmt.Sprintf("Hello, %s! Happy birthday!", username)
	case 1:
		return fmt.Sprintf("Hello, %s! Your birthday is in 1 day", username)
	default:
		return fmt.Sprintf("Hello, %s! Your birthday is in %d days", username, days)
	}
}
