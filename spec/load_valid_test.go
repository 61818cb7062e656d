package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func loadOK(t *testing.T, path string, opts LoadOptions) []*Spec {
	t.Helper()
	specs, err := LoadFile(path, opts)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return specs
}

// Every valid fixture loads, and what render prints loads again to the same
// spec (same hash): the rendered output is a spec in its own right.
func TestValidSpecsLoadAndRoundTrip(t *testing.T) {
	t.Chdir("..")
	for _, path := range specFixtures(t, "valid") {
		t.Run(path, func(t *testing.T) {
			specs := loadOK(t, path, loadOptionsFor(t, path))
			for _, s := range specs {
				out, err := RenderYAML(s)
				if err != nil {
					t.Fatal(err)
				}
				again, err := LoadBytes(path, out, LoadOptions{})
				if err != nil {
					t.Fatalf("rendered spec does not load: %v\n%s", err, out)
				}
				if again[0].Hash() != s.Hash() {
					t.Errorf("rendered spec differs once loaded again:\n%s", out)
				}
			}
		})
	}
}

// A minimal spec is valid and gets every default; the loader's defaults
// (from the schema) agree with SetDefaults on a literal.
func TestMinimalSpecDefaults(t *testing.T) {
	t.Chdir("..")
	got := loadOK(t, specDir+"/valid/minimal.yaml", LoadOptions{})
	if len(got) != 1 {
		t.Fatalf("got %d specs, want 1", len(got))
	}
	want := &Spec{
		Name:   "orders-pg17",
		Source: Endpoint{DSN: "postgres://replicator@blue.internal:5432/orders"},
		Target: Endpoint{DSN: "postgres://postgres@green.internal:5432/orders"},
		Schema: SchemaSpec{Copy: true, Roles: true},
		Cutover: CutoverSpec{ReverseReplication: true, Switch: SwitchSpec{PgBouncer: &PgBouncerSwitch{
			AdminDSN: "postgres://pgbouncer@127.0.0.1:6432/pgbouncer",
			Config:   "/etc/pgbouncer/pgbouncer.ini",
			Database: "orders",
		}}},
		File: specDir + "/valid/minimal.yaml",
	}
	want.SetDefaults()
	want.Vars = map[string]VarDecl{}
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("loaded minimal spec:\n%+v\nwant:\n%+v", got[0], want)
	}
	s := got[0]
	checks := map[string][2]any{
		"tables.include":           {s.Tables.Include, []string{"*.*"}},
		"initial_copy.method":      {s.Replication.InitialCopy.Method, "subscription"},
		"initial_copy.workers":     {s.Replication.InitialCopy.Workers, 4},
		"split_tables_larger_than": {s.Replication.InitialCopy.SplitTablesLargerThan, ByteSize(1 << 30)},
		"sequences.margin":         {s.Sequences.Margin, int64(1000)},
		"verify.mode":              {s.Verify.Mode, "checksum"},
		"verify.workers":           {s.Verify.Workers, 2},
		"cutover.approval":         {s.Cutover.Approval, "manual"},
		"cutover.pause_timeout":    {s.Cutover.PauseTimeout, Duration(10 * time.Second)},
		"cutover.freeze":           {s.Cutover.Freeze, "pooler"},
		"publication":              {s.PublicationName(), "pgshift_orders_pg17"},
		"slot":                     {s.SlotName(), "pgshift_orders_pg17"},
		"reverse":                  {s.ReverseName(), "pgshift_orders_pg17_reverse"},
		"state":                    {s.StatePath(), specDir + "/valid/orders-pg17.pgshift-state.json"},
	}
	for name, c := range checks {
		if !reflect.DeepEqual(c[0], c[1]) {
			t.Errorf("%s = %#v, want %#v", name, c[0], c[1])
		}
	}
}

// An explicit zero in a file stays zero: defaults only fill absent keys.
func TestExplicitZeroKept(t *testing.T) {
	spec := `version: 1
name: z
source: {dsn: "host=a dbname=x"}
target: {dsn: "host=b dbname=x"}
sequences: {margin: 0}
schema: {copy: false}
cutover:
  reverse_replication: false
  switch: {exec: {switch: [a], back: [b]}}
`
	got, err := LoadBytes("z.yaml", []byte(spec), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := got[0]
	if s.Sequences.Margin != 0 || s.Schema.Copy || s.Cutover.ReverseReplication || !s.Schema.Roles {
		t.Errorf("margin=%d copy=%v reverse=%v roles=%v; want 0 false false true", s.Sequences.Margin, s.Schema.Copy, s.Cutover.ReverseReplication, s.Schema.Roles)
	}
}

func TestFullSpecEveryField(t *testing.T) {
	t.Chdir("..")
	s := loadOK(t, specDir+"/valid/full.yaml", LoadOptions{})[0]
	if s.Name != "orders-pg17" || s.Target.DSN != "host=127.0.0.2 port=5433 user=postgres dbname=orders" {
		t.Errorf("templates not rendered: name %q target %q", s.Name, s.Target.DSN)
	}
	if s.Replication.InitialCopy.SplitTablesLargerThan != 512<<20 || s.Cutover.PauseTimeout.D() != 90*time.Second {
		t.Errorf("split %v pause %v", s.Replication.InitialCopy.SplitTablesLargerThan, s.Cutover.PauseTimeout)
	}
	if s.Replication.Options["binary"] != "true" || s.Replication.Options["streaming"] != "parallel" || len(s.Replication.Options) != 9 {
		t.Errorf("options %v", s.Replication.Options)
	}
	if s.Cutover.Switch.PgBouncer.AdminPasswordEnv != "PGBOUNCER_ADMIN_PASSWORD" || s.Metrics.Listen != "127.0.0.1:9187" {
		t.Errorf("pgbouncer %+v metrics %+v", s.Cutover.Switch.PgBouncer, s.Metrics)
	}
	if d := s.Vars["green_host"]; d.Default == nil || *d.Default != "127.0.0.2" || d.Description != "green cluster address" {
		t.Errorf("vars %+v", s.Vars)
	}
	if got := s.Replication.Outage(); got != 10*time.Minute {
		t.Errorf("outage_timeout %v, want 10m", got)
	}
	if s.PublicationName() != "orders_pub" || s.SubscriptionName() != "orders_sub" || s.SlotName() != "orders_slot" {
		t.Errorf("names %s %s %s", s.PublicationName(), s.SubscriptionName(), s.SlotName())
	}
}

// Precedence: declared default < --vars-file < inventory entry < --var.
func TestVarsPrecedence(t *testing.T) {
	t.Chdir("..")
	path := specDir + "/valid/templated.yaml"
	s := loadOK(t, path, LoadOptions{VarsFile: specDir + "/valid/templated.vars.yaml"})[0]
	if s.Name != "invoices-pg17" || s.Source.DSN != "postgres://replicator@10.0.0.1:5432/invoices" {
		t.Errorf("vars file: name %q dsn %q", s.Name, s.Source.DSN)
	}
	if s.Replication.InitialCopy.Workers != 6 {
		t.Errorf("workers %d from the vars file, want 6 (a rendered integer)", s.Replication.InitialCopy.Workers)
	}
	s = loadOK(t, path, LoadOptions{VarsFile: specDir + "/valid/templated.vars.yaml", Vars: map[string]string{"db": "orders", "port": "6432"}})[0]
	if s.Name != "orders-pg17" || s.Target.DSN != "postgres://postgres@10.0.0.2:6432/orders" {
		t.Errorf("--var over vars file: name %q dsn %q", s.Name, s.Target.DSN)
	}
}

func TestInventoryRendersOneSpecPerEntry(t *testing.T) {
	t.Chdir("..")
	specs := loadOK(t, specDir+"/valid/fleet.yaml", LoadOptions{Inventory: specDir + "/valid/fleet.inventory.yaml"})
	var names, targets []string
	for _, s := range specs {
		names = append(names, s.Name)
		targets = append(targets, s.Target.DSN)
	}
	if strings.Join(names, " ") != "orders-pg17 invoices-pg17 customers-pg17" {
		t.Errorf("names %v", names)
	}
	if targets[2] != "postgres://postgres@db2.internal:6543/customers" {
		t.Errorf("entry 2 target %q: the entry's green_port must win over the default", targets[2])
	}
	if specs[0].Cutover.Switch.Exec.Switch[1] != "orders" || specs[1].Cutover.Switch.Exec.Back[1] != "invoices" {
		t.Errorf("exec argv not rendered per entry: %v %v", specs[0].Cutover.Switch.Exec, specs[1].Cutover.Switch.Exec)
	}
	if specs[0].Hash() == specs[1].Hash() {
		t.Error("two different databases hash the same")
	}
}

// A password written in a DSN is refused, and no part of it appears in any
// message, whatever the DSN's shape or other problems.
func TestPasswordNeverInErrors(t *testing.T) {
	const pw = "Xq7zP9kLw2"
	dsns := []string{
		"postgres://u:" + pw + "@h:5432/db",
		"postgresql://u:" + pw + "@h:54x2/db",
		"postgres://u:" + pw + "@h:5432/db?sslmode=bogus",
		"postgres://u@h/db?password=" + pw,
		"postgres://u:" + pw + "%zz@h/db",
		"host=h user=u password=" + pw + " dbname=db",
		"host=h password='" + pw + " x' dbname",
		"host=h sslpassword=" + pw + " dbname=db",
		"host=h PASSWORD = " + pw,
		"postgres://u:" + pw + "@h:5432/db\"x",
	}
	for _, dsn := range dsns {
		spec := "version: 1\nname: n\nsource:\n  dsn: '" + strings.ReplaceAll(dsn, "'", "''") + "'\ntarget:\n  dsn: " + "'" + strings.ReplaceAll(dsn, "'", "''") + "'\n" +
			"cutover: {pause_timeout: x, switch: {pgbouncer: {admin_dsn: '" + strings.ReplaceAll(dsn, "'", "''") + "', config: c, database: d}}}\n"
		_, err := LoadBytes("s.yaml", []byte(spec), LoadOptions{})
		var se *Errors
		if !errors.As(err, &se) {
			t.Fatalf("%q: want Errors, got %v", dsn, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "source.dsn: holds a password") {
			t.Errorf("%q: password not refused:\n%s", dsn, msg)
		}
		for i := 0; i+4 <= len(pw); i++ {
			if strings.Contains(msg, pw[i:i+4]) {
				t.Errorf("%q: message holds %q, part of the password:\n%s", dsn, pw[i:i+4], msg)
			}
		}
	}
}

func TestUnits(t *testing.T) {
	for in, want := range map[string]ByteSize{"1GiB": 1 << 30, "512MiB": 512 << 20, "10": 10, "1 kB": 1000, "2TiB": 2 << 40, "3MB": 3e6} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1.5GiB", "1 gigs", "-1", "99999999999TiB", "GiB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", bad)
		}
	}
	for in, want := range map[ByteSize]string{1 << 30: "1GiB", 1536 << 20: "1536MiB", 1000: "1000B", 0: "0B", 2048: "2KiB"} {
		if got := in.String(); got != want {
			t.Errorf("ByteSize(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"10 seconds": "10s", "5 min": "5m", "2h": "2h", "1.5 hours": "1.5h", "forever": ""} {
		if got := suggestDuration(in); got != want {
			t.Errorf("suggestDuration(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHashStableAndSensitive(t *testing.T) {
	t.Chdir("..")
	a := loadOK(t, specDir+"/valid/full.yaml", LoadOptions{})[0]
	b := loadOK(t, specDir+"/valid/full.yaml", LoadOptions{})[0]
	if a.Hash() != b.Hash() || len(a.Hash()) != 64 {
		t.Fatalf("hash not stable: %s %s", a.Hash(), b.Hash())
	}
	b.Verify.Workers++
	if a.Hash() == b.Hash() {
		t.Error("hash ignores verify.workers")
	}
	c := loadOK(t, specDir+"/valid/full.yaml", LoadOptions{Vars: map[string]string{"db": "other"}})[0]
	if a.Hash() == c.Hash() {
		t.Error("hash ignores a different --var")
	}
}

func TestDidYouMean(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"pause_timout", "pause_timeout"}, {"swtich", "switch"}, {"replciation", "replication"},
		{"xyz", ""}, {"checksums", "checksum"}, {"a", ""},
	} {
		got := nearest(c.in, []string{"pause_timeout", "switch", "replication", "checksum", "count", "freeze"})
		if got != c.want {
			t.Errorf("nearest(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
