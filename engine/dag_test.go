package engine

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestCompileStableOrder(t *testing.T) {
	// The agreed DAG, given in a scrambled order: ties break by ID.
	steps := []Step{
		&fakeStep{id: "verify", needs: []string{"replication.catchup"}},
		&fakeStep{id: "target.subscription", needs: []string{"target.schema", "source.slot"}},
		&fakeStep{id: "source.slot", needs: []string{"source.publication"}},
		&fakeStep{id: "preflight.target"},
		&fakeStep{id: "audit", needs: []string{"preflight.source", "preflight.target"}},
		&fakeStep{id: "target.roles", needs: []string{"audit"}},
		&fakeStep{id: "cutover", needs: []string{"verify"}},
		&fakeStep{id: "target.schema", needs: []string{"target.roles"}},
		&fakeStep{id: "preflight.source"},
		&fakeStep{id: "source.publication", needs: []string{"audit"}},
		&fakeStep{id: "replication.catchup", needs: []string{"target.subscription"}},
	}
	want := []string{"preflight.source", "preflight.target", "audit", "source.publication", "source.slot",
		"target.roles", "target.schema", "target.subscription", "replication.catchup", "verify", "cutover"}
	for i := 0; i < 5; i++ {
		g := mustCompile(t, steps...)
		if got := g.Order(); !reflect.DeepEqual(got, want) {
			t.Fatalf("order %v\nwant  %v", got, want)
		}
		steps = append(steps[3:], steps[:3]...) // input order must not matter
	}
	g := mustCompile(t, steps...)
	rev := g.Reverse()
	if rev[0] != "cutover" || rev[len(rev)-1] != "preflight.source" {
		t.Fatalf("reverse %v", rev)
	}
}

func TestCompileErrorsListedStably(t *testing.T) {
	steps := []Step{
		&fakeStep{id: "c", needs: []string{"a"}},
		&fakeStep{id: "a", needs: []string{"b"}},
		&fakeStep{id: "b", needs: []string{"c", "ghost"}},
		&fakeStep{id: "z", needs: []string{"z"}},
		&fakeStep{id: "y", needs: []string{"a"}},
		&fakeStep{id: "m", needs: []string{"phantom"}},
		&fakeStep{id: "m"},
	}
	_, err := Compile(steps)
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("err %v", err)
	}
	want := []string{
		`step "m" is defined twice: step IDs must be unique`,
		`step "b" needs "ghost", which no step provides`,
		`step "m" needs "phantom", which no step provides`,
		`cycle: a -> b -> c -> a (each step needs the next)`,
		`cycle: z -> z (each step needs the next)`,
	}
	if !reflect.DeepEqual(ce.Problems, want) {
		t.Fatalf("problems:\n%q\nwant\n%q", ce.Problems, want)
	}
}

func TestWalkParallelismBound(t *testing.T) {
	const bound = 3
	var steps []Step
	for _, id := range []string{"s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"} {
		steps = append(steps, &fakeStep{id: id})
	}
	g := mustCompile(t, steps...)
	var mu sync.Mutex
	inflight, peak, arrived := 0, 0, 0
	full := make(chan struct{})
	res := g.Walk(context.Background(), WalkOptions{Parallelism: bound}, func(ctx context.Context, s Step) error {
		mu.Lock()
		inflight++
		peak = max(peak, inflight)
		arrived++
		if arrived == bound {
			close(full)
		}
		mu.Unlock()
		// The first steps wait until the bound is reached: it proves that
		// `bound` steps do run at once, and peak proves no more do.
		select {
		case <-full:
		case <-time.After(10 * time.Second):
			return errors.New("the bound was never reached")
		}
		mu.Lock()
		inflight--
		mu.Unlock()
		return nil
	})
	for id, err := range res {
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	if peak != bound {
		t.Fatalf("peak concurrency %d, want %d", peak, bound)
	}
}

func TestWalkRespectsDependencies(t *testing.T) {
	var mu sync.Mutex
	finished := map[string]bool{}
	steps := []Step{
		&fakeStep{id: "a"}, &fakeStep{id: "b", needs: []string{"a"}}, &fakeStep{id: "c", needs: []string{"a"}},
		&fakeStep{id: "d", needs: []string{"b", "c"}},
	}
	g := mustCompile(t, steps...)
	g.Walk(context.Background(), WalkOptions{Parallelism: 4}, func(ctx context.Context, s Step) error {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range s.Needs() {
			if !finished[n] {
				t.Errorf("%s started before %s finished", s.ID(), n)
			}
		}
		finished[s.ID()] = true
		return nil
	})
	// Reverse: every step waits for the steps that need it.
	finished = map[string]bool{}
	g.Walk(context.Background(), WalkOptions{Parallelism: 4, Reverse: true}, func(ctx context.Context, s Step) error {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range g.Dependents(s.ID()) {
			if !finished[d] {
				t.Errorf("reverse: %s started before %s", s.ID(), d)
			}
		}
		finished[s.ID()] = true
		return nil
	})
}
