package local

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// appDockerfile is the app's Dockerfile, relative to the module root.
const appDockerfile = "app/Dockerfile"

// DockerfileStage is what the local image takes from the final stage of
// app/Dockerfile.
type DockerfileStage struct {
	From       string
	Copy       [][2]string // from the build stage: source, destination
	User       string
	Expose     []string
	Entrypoint []string
}

// parseDockerfile reads the final stage of a Dockerfile: FROM, COPY
// --from, USER, EXPOSE and ENTRYPOINT (exec form). It understands comments
// and line continuations, which is all app/Dockerfile uses.
func parseDockerfile(src string) (DockerfileStage, error) {
	var st DockerfileStage
	text := strings.ReplaceAll(src, "\\\n", " ")
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			f := strings.Fields(rest)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				return st, fmt.Errorf("line %d of the Dockerfile: FROM without an image", i+1)
			}
			st = DockerfileStage{From: f[0]} // a new stage: only the last counts
		case "COPY":
			f := strings.Fields(rest)
			if len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				st.Copy = append(st.Copy, [2]string{f[1], f[2]})
			}
		case "USER":
			st.User = rest
		case "EXPOSE":
			st.Expose = append(st.Expose, strings.Fields(rest)...)
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &st.Entrypoint); err != nil {
				return st, fmt.Errorf("line %d of the Dockerfile: ENTRYPOINT must be a JSON array: %v", i+1, err)
			}
		}
	}
	if st.From == "" || len(st.Entrypoint) == 0 || len(st.Copy) != 1 {
		return st, fmt.Errorf("the Dockerfile has no final stage with FROM, one COPY --from and an ENTRYPOINT: %+v", st)
	}
	return st, nil
}

// distrolessUsers are the accounts of gcr.io/distroless/static:nonroot,
// which the Dockerfile's USER names.
var distrolessUsers = map[string]string{"root": "0", "nonroot": "65532", "nobody": "65534"}

// BuildAppImage builds the app's container image as app/Dockerfile
// describes it, without a container engine: the same static build of the
// app (CGO off, -trimpath -ldflags=-s -w, for linux/goarch), at the final
// stage's path, with its user, ports and entrypoint. What differs: the
// Dockerfile's base images (golang, distroless) cannot be pulled here, so
// the layer holds the binary and distroless's /etc/passwd and /etc/group
// only, not its CA certificates and time zones (the app uses neither).
//
// moduleRoot is the pgha module's directory; "" finds it from the working
// directory (go env GOMOD).
func BuildAppImage(ctx context.Context, moduleRoot, goarch string) (*Image, error) {
	if moduleRoot == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		gomod := strings.TrimSpace(string(out))
		if err != nil || gomod == "" || gomod == os.DevNull {
			return nil, fmt.Errorf("not inside the pgha module (go env GOMOD: %q, %v)", gomod, err)
		}
		moduleRoot = filepath.Dir(gomod)
	}
	src, err := os.ReadFile(filepath.Join(moduleRoot, appDockerfile))
	if err != nil {
		return nil, err
	}
	st, err := parseDockerfile(string(src))
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "pgha-app-image")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "app")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./app")
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./app: %w: %s", err, bytes.TrimSpace(out))
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	user, group, _ := strings.Cut(st.User, ":")
	uid, ok := distrolessUsers[user]
	gid, gok := distrolessUsers[group]
	if group == "" {
		gid, gok = uid, ok
	}
	if !ok || !gok {
		return nil, fmt.Errorf("the Dockerfile's USER %q is not a distroless account (%v)", st.User, distrolessUsers)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	mtime := time.Unix(0, 0)
	add := func(h tar.Header, body []byte) {
		h.ModTime, h.Size, h.Format = mtime, int64(len(body)), tar.FormatPAX
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		tw.WriteHeader(&h)
		tw.Write(body)
	}
	add(tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(tar.Header{Name: "etc/passwd", Mode: 0o644}, []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	add(tar.Header{Name: "etc/group", Mode: 0o644}, []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"))
	add(tar.Header{Name: "home/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(tar.Header{Name: "home/nonroot/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 65532, Gid: 65532}, nil)
	add(tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil)
	add(tar.Header{Name: strings.TrimPrefix(st.Copy[0][1], "/"), Mode: 0o755}, binary)
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer.Bytes())
	if err := zw.Close(); err != nil {
		return nil, err
	}
	ports := map[string]struct{}{}
	for _, p := range st.Expose {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		ports[p] = struct{}{}
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": goarch, "os": "linux",
		"config": map[string]any{
			"User": uid + ":" + gid, "Entrypoint": st.Entrypoint, "ExposedPorts": ports,
			"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest(layer.Bytes())}},
	})
	if err != nil {
		return nil, err
	}
	return &Image{Config: cfg, Layer: gz.Bytes()}, nil
}

// Image is a one-layer OCI image.
type Image struct {
	Config []byte // the image configuration (JSON)
	Layer  []byte // the layer, a gzipped tar
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// Manifest is img's OCI manifest.
func (img *Image) Manifest() []byte {
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(img.Config), "size": len(img.Config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(img.Layer), "size": len(img.Layer)}},
	})
	return m
}

// PushImage pushes img to ref ("host/repository:tag") over HTTPS through
// rt, without credentials (the local registry asks for none), with the
// registry HTTP API (https://distribution.github.io/distribution/spec/api/).
func PushImage(ctx context.Context, img *Image, ref string, rt http.RoundTripper) error {
	host, rest, ok := strings.Cut(ref, "/")
	repo, tag, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return fmt.Errorf("image reference %q is not HOST/REPOSITORY:TAG", ref)
	}
	client := &http.Client{Transport: rt, Timeout: time.Minute}
	base := "https://" + host + "/v2/" + repo
	do := func(method, url, ctype string, body []byte, want int) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			return nil, fmt.Errorf("%s %s: %s", method, url, resp.Status)
		}
		return resp, nil
	}
	// Blobs: start an upload, then finish it in one PUT (the registry API's
	// "monolithic upload").
	for _, blob := range [][]byte{img.Layer, img.Config} {
		resp, err := do(http.MethodPost, base+"/blobs/uploads/", "", nil, http.StatusAccepted)
		if err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		loc, err := resp.Location()
		if err != nil {
			return fmt.Errorf("push %s: upload location: %w", ref, err)
		}
		q := loc.Query()
		q.Set("digest", digest(blob))
		loc.RawQuery = q.Encode()
		if _, err := do(http.MethodPut, loc.String(), "application/octet-stream", blob, http.StatusCreated); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
	}
	if _, err := do(http.MethodPut, base+"/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", img.Manifest(), http.StatusCreated); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}
