package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func date(s string) time.Time {
	d, err := time.Parse(dateLayout, s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestDaysUntilBirthday(t *testing.T) {
	tests := []struct {
		name       string
		dob, today string
		want       int
	}{
		{"later this year", "1984-06-28", "2024-03-01", 119},
		{"birthday itself", "1990-06-15", "2024-06-15", 0},
		{"day after birthday waits a year", "1990-06-15", "2024-06-16", 364},
		{"31 Dec to 1 Jan", "1990-01-01", "2023-12-31", 1},
		{"1 Jan to 31 Dec of a leap year", "1990-12-31", "2024-01-01", 365},
		{"1 Jan to 31 Dec of a common year", "1990-12-31", "2023-01-01", 364},
		{"29 Feb on 28 Feb of a common year", "2000-02-29", "2023-02-28", 0},
		{"29 Feb from 1 Mar before a leap year", "2000-02-29", "2023-03-01", 365},
		{"29 Feb on 28 Feb of a leap year", "2000-02-29", "2024-02-28", 1},
		{"29 Feb on 29 Feb", "2000-02-29", "2024-02-29", 0},
		{"29 Feb from 1 Mar of a leap year", "2000-02-29", "2024-03-01", 364},
		{"29 Feb in 2100, not a leap year", "2000-02-29", "2100-02-28", 0},
		{"29 Feb in 2000, a leap year", "1996-02-29", "2000-02-28", 1},
		{"1 Mar across a leap day", "1990-03-01", "2024-02-28", 2},
		{"1 Mar in a common year", "1990-03-01", "2023-02-28", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := daysUntilBirthday(date(tt.dob), date(tt.today)); got != tt.want {
				t.Errorf("daysUntilBirthday(%s, %s) = %d, want %d", tt.dob, tt.today, got, tt.want)
			}
		})
	}
}

func TestGreeting(t *testing.T) {
	tests := []struct {
		days int
		want string
	}{
		{0, "Hello, julio! Happy birthday!"},
		{1, "Hello, julio! Your birthday is in 1 day"},
		{2, "Hello, julio! Your birthday is in 2 days"},
		{365, "Hello, julio! Your birthday is in 365 days"},
	}
	for _, tt := range tests {
		if got := greeting("julio", tt.days); got != tt.want {
			t.Errorf("greeting(julio, %d) = %q, want %q", tt.days, got, tt.want)
		}
	}
}

func TestDateInTimeZone(t *testing.T) {
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2024, 3, 1, 23, 30, 0, 0, time.UTC)
	if got := dateIn(now, time.UTC); !got.Equal(date("2024-03-01")) {
		t.Errorf("UTC date of %s = %s, want 2024-03-01", now, got)
	}
	if got := dateIn(now, tokyo); !got.Equal(date("2024-03-02")) {
		t.Errorf("Tokyo date of %s = %s, want 2024-03-02", now, got)
	}
}

func TestCheckUsername(t *testing.T) {
	valid := []string{"a", "Julio", "julio", strings.Repeat("a", 255), "ABCxyz"}
	invalid := map[string]string{
		"empty":          "",
		"256 letters":    strings.Repeat("a", 256),
		"digit":          "julio1",
		"unicode letter": "jülio",
		"space":          "ju lio",
		"hyphen":         "ju-lio",
		"slash":          "ju/lio",
		"NUL":            "ju\x00lio",
	}
	for _, name := range valid {
		if err := checkUsername(name); err != nil {
			t.Errorf("checkUsername(%.20q) = %v, want nil", name, err)
		}
	}
	for why, name := range invalid {
		if err := checkUsername(name); !errors.Is(err, ErrInvalidUsername) {
			t.Errorf("%s: checkUsername(%.20q) = %v, want ErrInvalidUsername", why, name, err)
		}
	}
}

func TestParseDateOfBirth(t *testing.T) {
	today := date("2024-03-01")
	valid := []string{"2024-02-29", "1984-06-28", "0001-01-01", "2000-02-29"}
	invalid := map[string]struct {
		s    string
		want error
	}{
		"30 Feb":              {"2023-02-30", ErrInvalidDate},
		"29 Feb, common year": {"2023-02-29", ErrInvalidDate},
		"one-digit month":     {"2023-2-01", ErrInvalidDate},
		"one-digit day":       {"2023-02-1", ErrInvalidDate},
		"month 13":            {"2023-13-01", ErrInvalidDate},
		"year 0":              {"0000-06-01", ErrInvalidDate},
		"five-digit year":     {"12023-01-01", ErrInvalidDate},
		"timestamp":           {"1984-06-28T00:00:00Z", ErrInvalidDate},
		"leading space":       {" 1984-06-28", ErrInvalidDate},
		"slashes":             {"1984/06/28", ErrInvalidDate},
		"day first":           {"28-06-1984", ErrInvalidDate},
		"empty":               {"", ErrInvalidDate},
		"today":               {"2024-03-01", ErrDateNotPast},
		"tomorrow":            {"2024-03-02", ErrDateNotPast},
		"next year":           {"2025-01-01", ErrDateNotPast},
	}
	for _, s := range valid {
		if d, err := parseDateOfBirth(s, today); err != nil || d.Format(dateLayout) != s {
			t.Errorf("parseDateOfBirth(%q) = %s, %v; want the same date, nil", s, d, err)
		}
	}
	for why, tt := range invalid {
		if _, err := parseDateOfBirth(tt.s, today); !errors.Is(err, tt.want) {
			t.Errorf("%s: parseDateOfBirth(%q) = %v, want %v", why, tt.s, err, tt.want)
		}
	}
}

// FuzzPutHello drives the PUT handler's input parsing with arbitrary
// usernames and bodies. With no database behind it, valid input ends in 503;
// nothing may end in a 500 or a panic, every answer is a JSON error, and
// whatever passes validation is a valid username and a strict past date.
func FuzzPutHello(f *testing.F) {
	f.Add("julio", `{"dateOfBirth":"1984-06-28"}`)
	f.Add("julio", `{"dateOfBirth":"2023-02-30"}`)
	f.Add("julio", `{"dateOfBirth":19840628}`)
	f.Add("julio", `{"dateOfBirth":null}`)
	f.Add("julio", `{"dateOfBirth":"1984-06-28","x":1}`)
	f.Add("julio", `{"dateOfBirth":"1984-06-28"} {}`)
	f.Add("jülio", `{}`)
	f.Add("", `[`)
	f.Fuzz(func(t *testing.T, username, body string) {
		s := &server{now: func() time.Time { return date("2024-03-01") }, loc: time.UTC, log: discardLog}
		target := "/hello/" + url.PathEscape(username)
		if path.Clean(target) != target && target != "/hello/" {
			t.Skip("the mux redirects unclean paths such as /hello/..")
		}
		r := httptest.NewRequest(http.MethodPut, target, strings.NewReader(body))
		w := httptest.NewRecorder()
		s.routes().ServeHTTP(w, r)

		var e map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e["error"] == "" || len(e) != 1 {
			t.Fatalf("status %d, body %q: want a JSON error", w.Code, w.Body)
		}
		switch w.Code {
		case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge:
		case http.StatusServiceUnavailable: // passed validation
			var req putHelloRequest
			if err := json.Unmarshal([]byte(body), &req); err != nil {
				t.Fatalf("accepted body %q: %v", body, err)
			}
			if checkUsername(username) != nil || !utf8.ValidString(username) {
				t.Fatalf("accepted username %q", username)
			}
			if _, err := parseDateOfBirth(req.DateOfBirth, date("2024-03-01")); err != nil {
				t.Fatalf("accepted date %q: %v", req.DateOfBirth, err)
			}
		default:
			t.Fatalf("status %d for username %q, body %q", w.Code, username, body)
		}
	})
}
