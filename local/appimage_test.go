package local

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestDockerfileStage reads app/Dockerfile's final stage, which the local
// image copies: a change of its entrypoint, user or port changes the image.
func TestDockerfileStage(t *testing.T) {
	src, err := os.ReadFile("../" + appDockerfile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseDockerfile(string(src))
	if err != nil {
		t.Fatal(err)
	}
	if st.From != "gcr.io/distroless/static-debian12:nonroot" || st.User != "nonroot:nonroot" ||
		!slices.Equal(st.Expose, []string{"5000"}) || !slices.Equal(st.Entrypoint, []string{"/hello"}) ||
		len(st.Copy) != 1 || st.Copy[0] != [2]string{"/out/hello", "/hello"} {
		t.Errorf("final stage of app/Dockerfile: %+v", st)
	}
	edited := strings.Replace(string(src), `ENTRYPOINT ["/hello"]`, `ENTRYPOINT ["/hello", "--verbose"]`, 1)
	if st, err := parseDockerfile(edited); err != nil || !slices.Equal(st.Entrypoint, []string{"/hello", "--verbose"}) {
		t.Errorf("edited entrypoint: %+v, %v", st.Entrypoint, err)
	}
	for _, bad := range []string{
		"FROM scratch\nENTRYPOINT /hello\n",
		"FROM a AS b\nCOPY x /y\nENTRYPOINT [\"/y\"]\n",
		"ENTRYPOINT [\"/y\"]\n",
	} {
		if _, err := parseDockerfile(bad); err == nil {
			t.Errorf("parseDockerfile(%q) accepted it", bad)
		}
	}
}
