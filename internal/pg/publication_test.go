package pg

import (
	"strings"
	"testing"
)

func TestPublicationMismatch(t *testing.T) {
	want := PublicationPlan{Name: "pgshift_x", Partitioned: true, Tables: []Table{
		{Schema: "public", Name: "a"}, {Schema: "public", Name: "events", Partitioned: true}, {Schema: "sales", Name: "b"},
	}}
	same := Publication{Exists: true, AllActions: true, ViaRoot: true, Tables: []string{"public.a", "public.events", "sales.b"}}
	if d := want.Mismatch(same); len(d) != 0 {
		t.Errorf("identical publication reported as different: %v", d)
	}
	diff := want.Mismatch(Publication{Exists: true, AllActions: false, ViaRoot: false,
		Tables: []string{"public.a", "public.old"}, Filtered: []string{"public.a"}, Schemas: 1})
	got := strings.Join(diff, "\n")
	for _, w := range []string{"+ table public.events", "+ table sales.b", "- table public.old", "row filter", "FOR TABLES IN SCHEMA",
		"publish: insert, update, delete, truncate", "publish_via_partition_root: false -> true"} {
		if !strings.Contains(got, w) {
			t.Errorf("mismatch lacks %q:\n%s", w, got)
		}
	}
}

func TestPublicationSQL(t *testing.T) {
	p := PublicationPlan{Name: `odd"name`, Tables: []Table{{Schema: "public", Name: `we"ird`}, {Schema: "s p", Name: "t"}}}
	if got, want := p.CreateSQL(), `CREATE PUBLICATION "odd""name" FOR TABLE "public"."we""ird", "s p"."t" WITH (publish = 'insert, update, delete, truncate')`; got != want {
		t.Errorf("create:\n got %s\nwant %s", got, want)
	}
	p.Partitioned = true
	alter := p.AlterSQL()
	if alter[0] != `ALTER PUBLICATION "odd""name" SET TABLE "public"."we""ird", "s p"."t"` ||
		alter[1] != `ALTER PUBLICATION "odd""name" SET (publish = 'insert, update, delete, truncate', publish_via_partition_root = true)` {
		t.Errorf("alter: %q", alter)
	}
}
