package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerfile builds the app the way the Dockerfile's build stage does,
// from a context holding only what its COPY lines copy, so the Dockerfile
// cannot drift from a build that works; and checks the final stage. There is
// no Docker engine here, so the stages are replayed by hand, as BuildKit runs
// them for a linux/arm64 image on an amd64 builder: the build stage must run
// on the builder's platform and cross-compile, or it needs QEMU.
func TestDockerfile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the app")
	}
	stages := parseDockerfile(t, "Dockerfile")
	if len(stages) != 2 {
		t.Fatalf("want a build stage and a final stage, got %d stages", len(stages))
	}
	build, final := stages[0], stages[1]
	if from := build[0].args; len(from) < 2 || from[0] != "--platform=$BUILDPLATFORM" {
		t.Errorf("build stage FROM %s: want --platform=$BUILDPLATFORM, so it runs without emulation", strings.Join(from, " "))
	}
	// BuildKit's automatic platform arguments for this build.
	platformArgs := map[string]string{"BUILDPLATFORM": "linux/amd64", "TARGETOS": "linux", "TARGETARCH": "arm64"}
	args := map[string]string{}

	// Replay the build stage: WORKDIR, COPY from the repository root, RUN.
	root := t.TempDir()
	out := filepath.Join(root, "out")
	workdir := root
	var runs int
	for _, in := range build[1:] {
		switch in.cmd {
		case "WORKDIR":
			workdir = filepath.Join(root, in.args[0])
			if err := os.MkdirAll(workdir, 0o755); err != nil {
				t.Fatal(err)
			}
		case "COPY":
			srcs, dst := in.args[:len(in.args)-1], in.args[len(in.args)-1]
			for _, src := range srcs {
				// As Docker does: a directory's contents go into dst, a
				// file goes into dst if it ends with a slash, else to dst.
				target := filepath.Join(workdir, dst)
				if fi, err := os.Stat(filepath.Join("..", src)); err == nil && !fi.IsDir() && strings.HasSuffix(dst, "/") {
					target = filepath.Join(target, filepath.Base(src))
				}
				copyPath(t, filepath.Join("..", src), target)
			}
		case "ARG":
			for _, a := range in.args {
				if v, ok := platformArgs[a]; ok {
					args[a] = v
				}
			}
		case "RUN":
			runs++
			if !strings.Contains(in.line, "CGO_ENABLED=0") || !strings.Contains(in.line, "go build") {
				t.Errorf("RUN %s: want a CGO_ENABLED=0 go build", in.line)
			}
			cmd := exec.Command("sh", "-c", strings.ReplaceAll(in.line, "/out/", out+"/"))
			cmd.Dir = workdir
			// RUN sees the stage's ARGs as variables, and no GOARCH of the
			// host's: only what the Dockerfile passes counts.
			cmd.Env = append(os.Environ(), "GOOS=", "GOARCH=")
			for k, v := range args {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("RUN %s: %v\n%s", in.line, err, b)
			}
		default:
			t.Fatalf("build stage: %s is not replayed by this test", in.cmd)
		}
	}
	if runs != 1 {
		t.Fatalf("build stage has %d RUN lines, want 1", runs)
	}
	bin, err := elf.Open(filepath.Join(out, "hello"))
	if err != nil {
		t.Fatalf("the build stage's output: %v", err)
	}
	defer bin.Close()
	if bin.Machine != elf.EM_AARCH64 {
		t.Errorf("the build stage built a %v binary for a linux/arm64 image: want a cross-compiled aarch64 one", bin.Machine)
	}
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary is dynamically linked")
		}
	}

	// The final stage: non-root, port 5000, runs the binary built above.
	want := map[string]string{
		"USER":       "nonroot:nonroot",
		"EXPOSE":     "5000",
		"COPY":       "--from=build /out/hello /hello",
		"ENTRYPOINT": `["/hello"]`,
	}
	if image := final[0].line; !strings.HasPrefix(image, "gcr.io/distroless/static") || !strings.HasSuffix(image, ":nonroot") {
		t.Errorf("final image %s, want a distroless static nonroot image", image)
	}
	for _, in := range final[1:] {
		if w, ok := want[in.cmd]; ok && in.line == w {
			delete(want, in.cmd)
		}
	}
	for cmd, line := range want {
		t.Errorf("final stage lacks %s %s", cmd, line)
	}
}

type instruction struct {
	cmd  string   // upper case: FROM, RUN, ...
	line string   // the rest of the line
	args []string // line split on spaces
}

// parseDockerfile returns the instructions of each stage; a stage starts with
// its FROM. Continuation lines are joined, comments dropped.
func parseDockerfile(t *testing.T, name string) [][]instruction {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	var stages [][]instruction
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cmd, rest, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), line: strings.TrimSpace(rest), args: strings.Fields(rest)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
			in.line = in.args[0]
			if strings.HasPrefix(in.line, "--platform=") && len(in.args) > 1 {
				in.line = in.args[1]
			}
		}
		if len(stages) == 0 {
			t.Fatalf("%s before the first FROM", in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	return stages
}

// copyPath copies a file or a directory tree.
func copyPath(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
