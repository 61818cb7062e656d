package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestSecretsNeverShown runs plan (text, JSON, saved), apply, status and
// cleanup with both passwords from password_env and a role with a password
// on blue: no output, log, plan file or state file holds a password or the
// role's password hash. A DSN holding a password is refused without
// echoing it.
func TestSecretsNeverShown(t *testing.T) {
	integration(t)
	t.Parallel()
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "app")
	green.CreateDatabase(t, "app")
	const (
		bluePassword  = "blue-Secret-7Qz"
		greenPassword = "green-Secret-9Kx"
		rolePassword  = "role-Secret-3Vw"
	)
	blue.Exec(t, "app", `CREATE ROLE app_user LOGIN PASSWORD '`+rolePassword+`';
		CREATE TABLE public.orders (id bigint PRIMARY KEY, note text);
		ALTER TABLE public.orders OWNER TO app_user;
		INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 100) g`)
	blueConn := connect(t, blue.DSN("app"))
	roleHash := scalar[string](t, blueConn, `SELECT rolpassword FROM pg_authid WHERE rolname = 'app_user'`)

	// A password written into a DSN is refused, without being echoed.
	greenDSN := strings.Replace(green.DSN("app"), "postgres@", "postgres:"+greenPassword+"@", 1)
	dir, spec := writeSpec(t, specOptions{name: "secrets", blue: blue.DSN("app"), green: greenDSN})
	r := pgshift(t, dir, "validate", "-f", spec)
	if r.code == 0 || !strings.Contains(r.stderr, "target.dsn: holds a password") || strings.Contains(r.stdout+r.stderr, greenPassword) {
		t.Fatalf("validate of a DSN with a password: want a refusal that does not show it\n%s", r)
	}

	// Passwords from the environment.
	dir, spec = writeSpec(t, specOptions{name: "secrets", blue: blue.DSN("app"), green: green.DSN("app")})
	b, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "target:", "  password_env: BLUE_PASSWORD\ntarget:", 1))
	b = []byte(strings.Replace(string(b), "cutover:", "  password_env: GREEN_PASSWORD\ncutover:", 1))
	if err := os.WriteFile(spec, b, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"BLUE_PASSWORD=" + bluePassword, "GREEN_PASSWORD=" + greenPassword}
	planFile := filepath.Join(dir, "plan.json")

	var outputs []result
	for _, args := range [][]string{
		{"validate", "-f", spec},
		{"render", "-f", spec},
		{"plan", "-f", spec, "--no-color"},
		{"plan", "-f", spec, "--format", "json"},
		{"plan", "-f", spec, "--format", "markdown"},
		{"plan", "-f", spec, "-out", planFile},
		{"apply", planFile, "--log-level", "debug"},
		{"plan", "-f", spec, "--no-color"},
		{"status", "-f", spec},
		{"status", "-f", spec, "--format", "json"},
		{"cleanup", "-f", spec, "--yes"},
	} {
		r := pgshiftEnv(t, dir, env, args...)
		if r.code != 0 {
			t.Fatalf("%s", r)
		}
		outputs = append(outputs, r)
	}
	// The password is in play: the subscription's conninfo carries it,
	// shown masked.
	if !strings.Contains(outputs[2].stdout, "password=********") {
		t.Errorf("the plan does not show the subscription's password masked:\n%s", outputs[2].stdout)
	}
	if n := scalar[int64](t, connect(t, green.DSN("app")), `SELECT count(*) FROM public.orders`); n != 100 {
		t.Fatalf("green holds %d orders, want 100", n)
	}

	secrets := map[string]string{"blue's password": bluePassword, "green's password": greenPassword,
		"the role's password": rolePassword, "the role's password hash": roleHash}
	for _, r := range outputs {
		for what, s := range secrets {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Errorf("pgshift %s shows %s", strings.Join(r.args, " "), what)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) < 2 {
		t.Fatalf("want the plan and state files in %s, found %v", dir, files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for what, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s holds %s", filepath.Base(f), what)
			}
		}
	}
}
