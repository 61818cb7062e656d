package main

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/spec"
	"gopkg.in/yaml.v3"
)

const deployDir = "../../deploy/"

// TestKubernetesJobManifest checks deploy/kubernetes/pgshift-job.yaml
// holds what docs/fleets.md and deploy/README.md promise: an Indexed Job of
// one completion per inventory entry, pods that take their entry from
// JOB_COMPLETION_INDEX (no --index in the arguments), retries for exit 3
// only, the spec and inventory from the ConfigMap (a spec that loads over
// that inventory), every password_env the spec names set from a Secret,
// and the state on the postgres backend.
func TestKubernetesJobManifest(t *testing.T) {
	data, err := os.ReadFile(deployDir + "kubernetes/pgshift-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			break
		}
		docs[d["kind"].(string)] = d
	}
	cm, job := docs["ConfigMap"], docs["Job"]
	if cm == nil || job == nil {
		t.Fatalf("the manifest holds %v, want a ConfigMap and a Job", slices.Sorted(maps.Keys(docs)))
	}
	get := func(v any, path ...any) any {
		for _, p := range path {
			switch k := p.(type) {
			case string:
				m, _ := v.(map[string]any)
				v = m[k]
			case int:
				l, _ := v.([]any)
				if k >= len(l) {
					return nil
				}
				v = l[k]
			}
		}
		return v
	}

	// The ConfigMap's spec loads over its inventory.
	dir := t.TempDir()
	cmData := get(cm, "data").(map[string]any)
	for name, text := range cmData {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text.(string)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	specs, err := spec.LoadFile(filepath.Join(dir, "fleet.yaml"), spec.LoadOptions{Inventory: filepath.Join(dir, "fleet.inventory.yaml")})
	if se, ok := err.(*spec.Errors); ok {
		t.Fatalf("the ConfigMap's spec does not load:\n%s", strings.Join(se.Lines(), "\n"))
	} else if err != nil {
		t.Fatalf("the ConfigMap's spec does not load: %v", err)
	}

	js := get(job, "spec")
	if got := get(js, "completionMode"); got != "Indexed" {
		t.Errorf("completionMode %v, want Indexed", got)
	}
	if got := get(js, "completions"); got != len(specs) {
		t.Errorf("completions %v, want %d: one per inventory entry", got, len(specs))
	}
	if get(js, "parallelism") == nil || get(js, "backoffLimitPerIndex") == nil {
		t.Errorf("parallelism or backoffLimitPerIndex missing")
	}
	if got := get(js, "template", "spec", "restartPolicy"); got != "Never" {
		t.Errorf("restartPolicy %v: a podFailurePolicy needs Never", got)
	}
	failIndex := false
	for _, r := range get(js, "podFailurePolicy", "rules").([]any) {
		codes, _ := get(r, "onExitCodes", "values").([]any)
		if get(r, "action") == "FailIndex" && get(r, "onExitCodes", "operator") == "In" {
			failIndex = slices.Contains(codes, any(exitError)) && slices.Contains(codes, any(exitUsage)) && !slices.Contains(codes, any(exitTransient))
		}
	}
	if !failIndex {
		t.Errorf("podFailurePolicy must fail the index on exit %d and %d and retry exit %d", exitError, exitUsage, exitTransient)
	}

	c := get(js, "template", "spec", "containers", 0)
	if get(c, "name") != "pgshift" {
		t.Errorf("container name %v, want pgshift (the podFailurePolicy names it)", get(c, "name"))
	}
	var args []string
	for _, a := range get(c, "args").([]any) {
		args = append(args, a.(string))
	}
	mount := ""
	for _, m := range get(c, "volumeMounts").([]any) {
		if get(m, "name") == "config" {
			mount = get(m, "mountPath").(string)
		}
	}
	if args[0] != "apply" || !slices.Contains(args, mount+"/fleet.yaml") || !slices.Contains(args, "--inventory") || !slices.Contains(args, mount+"/fleet.inventory.yaml") {
		t.Errorf("args %v: want apply -f %s/fleet.yaml --inventory %s/fleet.inventory.yaml", args, mount, mount)
	}
	if slices.Contains(args, "--"+flagIndex) {
		t.Errorf("args %v pass --index: the pod's entry comes from %s", args, envJobIndex)
	}
	if envJobIndex != "JOB_COMPLETION_INDEX" {
		t.Errorf("pgshift reads %s, Kubernetes sets JOB_COMPLETION_INDEX", envJobIndex)
	}
	if get(js, "template", "spec", "securityContext", "runAsNonRoot") != true {
		t.Errorf("the pod does not require a non-root user")
	}

	fromSecret := map[string]bool{}
	for _, e := range get(c, "env").([]any) {
		if get(e, "valueFrom", "secretKeyRef", "name") != nil {
			fromSecret[get(e, "name").(string)] = true
		}
	}
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(cmData["fleet.yaml"].(string)), &raw); err != nil {
		t.Fatal(err)
	}
	if get(raw, "state", "backend") != "postgres" {
		t.Errorf("the spec's state.backend is %v: pods share the state only through the postgres backend", get(raw, "state", "backend"))
	}
	for _, sp := range specs {
		for _, env := range []string{sp.Source.PasswordEnv, sp.Target.PasswordEnv, get(raw, "state", "password_env").(string)} {
			if env == "" || !fromSecret[env] {
				t.Errorf("%s: password_env %q is not set from a Secret in the Job (set from secrets: %v)", sp.Name, env, fromSecret)
			}
		}
	}
}

// TestDockerfile checks deploy/Dockerfile builds what the docs say: a
// static binary (CGO_ENABLED=0) in a golang image of go.mod's Go, a Debian
// slim runtime with postgresql-client from the PGDG repository, the binary
// at the path the docs name, a non-root user.
func TestDockerfile(t *testing.T) {
	df, err := os.ReadFile(deployDir + "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(df)
	gomod, _ := os.ReadFile("../../go.mod")
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(gomod))
	const bin = "/usr/local/bin/pgshift"
	for _, want := range []string{
		"FROM golang:" + goVersion[1] + "-",
		"CGO_ENABLED=0",
		"./cmd/pgshift",
		"FROM debian:bookworm-slim",
		"apt.postgresql.org/pub/repos/apt bookworm-pgdg main",
		"postgresql-client-$m",
		"ARG PG_CLIENTS=18",
		"COPY --from=build /out/pgshift " + bin,
		`ENTRYPOINT ["` + bin + `"]`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(text)
	if user == nil || strings.HasPrefix(user[1], "0") || strings.HasPrefix(user[1], "root") {
		t.Errorf("the image runs as %v, want a non-root user", user)
	}
	for _, doc := range []string{deployDir + "README.md", "../../docs/fleets.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), bin) || !strings.Contains(string(b), "deploy/Dockerfile") {
			t.Errorf("%s does not name the binary path %s and deploy/Dockerfile", doc, bin)
		}
	}
}
