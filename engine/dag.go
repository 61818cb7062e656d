package engine

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Graph is the compiled DAG of an upgrade's steps: every need resolved, no
// cycle, and a stable topological order (ties broken by step ID), so plans,
// state files and logs list steps the same way on every run.
type Graph struct {
	steps      map[string]Step
	needs      map[string][]string // sorted, deduplicated
	dependents map[string][]string // sorted
	order      []string
}

// CompileError lists every problem found in the steps, in a stable order:
// duplicate IDs, then unknown needs, then cycles.
type CompileError struct {
	Problems []string
}

func (e *CompileError) Error() string {
	return "the steps do not form a valid graph:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// Compile checks the steps and orders them.
func Compile(steps []Step) (*Graph, error) {
	g := &Graph{
		steps:      map[string]Step{},
		needs:      map[string][]string{},
		dependents: map[string][]string{},
	}
	var dup, unknown, cycles []string
	for _, s := range steps {
		id := s.ID()
		if _, ok := g.steps[id]; ok {
			dup = append(dup, fmt.Sprintf("step %q is defined twice: step IDs must be unique", id))
			continue
		}
		g.steps[id] = s
	}
	for id, s := range g.steps {
		seen := map[string]bool{}
		for _, n := range s.Needs() {
			if seen[n] {
				continue
			}
			seen[n] = true
			if _, ok := g.steps[n]; !ok {
				unknown = append(unknown, fmt.Sprintf("step %q needs %q, which no step provides", id, n))
				continue
			}
			g.needs[id] = append(g.needs[id], n)
			g.dependents[n] = append(g.dependents[n], id)
		}
	}
	for id := range g.steps {
		sort.Strings(g.needs[id])
		sort.Strings(g.dependents[id])
	}

	g.order = g.topoOrder()
	if len(g.order) < len(g.steps) {
		cycles = g.cycles()
	}
	sort.Strings(dup)
	sort.Strings(unknown)
	if problems := append(append(dup, unknown...), cycles...); len(problems) > 0 {
		return nil, &CompileError{Problems: problems}
	}
	return g, nil
}

// topoOrder is Kahn's algorithm taking the smallest ready ID each time.
// Steps on or behind a cycle are left out.
func (g *Graph) topoOrder() []string {
	indeg := map[string]int{}
	var ready []string
	for id := range g.steps {
		indeg[id] = len(g.needs[id])
		if indeg[id] == 0 {
			ready = append(ready, id)
		}
	}
	sort.Strings(ready)
	var order []string
	for len(ready) > 0 {
		id := ready[0]
		ready = ready[1:]
		order = append(order, id)
		for _, d := range g.dependents[id] {
			indeg[d]--
			if indeg[d] == 0 {
				i := sort.SearchStrings(ready, d)
				ready = append(ready[:i], append([]string{d}, ready[i:]...)...)
			}
		}
	}
	return order
}

// cycles describes each cycle once, as "cycle: a -> b -> a" where each step
// needs the next, starting from the cycle's smallest ID; sorted.
func (g *Graph) cycles() []string {
	placed := map[string]bool{}
	for _, id := range g.order {
		placed[id] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, scc := range g.components(placed) {
		if len(scc) == 1 && !slices.Contains(g.needs[scc[0]], scc[0]) {
			continue // behind a cycle, not on one
		}
		path := g.shortestCycle(scc)
		key := strings.Join(path, " -> ")
		if !seen[key] {
			seen[key] = true
			out = append(out, "cycle: "+key+" (each step needs the next)")
		}
	}
	sort.Strings(out)
	return out
}

// components returns the strongly connected components among unplaced steps
// (Tarjan), each sorted.
func (g *Graph) components(placed map[string]bool) [][]string {
	var ids []string
	for id := range g.steps {
		if !placed[id] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	index, low := map[string]int{}, map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	var out [][]string
	next := 0
	var visit func(string)
	visit = func(v string) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range g.needs[v] {
			if placed[w] {
				continue
			}
			if _, ok := index[w]; !ok {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var scc []string
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				scc = append(scc, w)
				if w == v {
					break
				}
			}
			sort.Strings(scc)
			out = append(out, scc)
		}
	}
	for _, id := range ids {
		if _, ok := index[id]; !ok {
			visit(id)
		}
	}
	return out
}

// shortestCycle walks needs from the component's smallest ID back to it.
func (g *Graph) shortestCycle(scc []string) []string {
	in := map[string]bool{}
	for _, id := range scc {
		in[id] = true
	}
	start := scc[0]
	prev := map[string]string{}
	queue := []string{start}
	visited := map[string]bool{}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range g.needs[v] {
			if !in[w] {
				continue
			}
			if w == start {
				path := []string{start}
				for x := v; x != start; x = prev[x] {
					path = append(path, x)
				}
				// path is start, then back-pointers from v: reverse the tail.
				tail := path[1:]
				for i, j := 0, len(tail)-1; i < j; i, j = i+1, j-1 {
					tail[i], tail[j] = tail[j], tail[i]
				}
				return append(path, start)
			}
			if !visited[w] {
				visited[w] = true
				prev[w] = v
				queue = append(queue, w)
			}
		}
	}
	return scc
}

// Order is the stable topological order: every step after the steps it needs.
func (g *Graph) Order() []string { return append([]string(nil), g.order...) }

// Reverse is the order for rollback: every step before the steps it needs.
func (g *Graph) Reverse() []string {
	r := g.Order()
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return r
}

// Step returns the step with this ID.
func (g *Graph) Step(id string) (Step, bool) {
	s, ok := g.steps[id]
	return s, ok
}

// Len is the number of steps.
func (g *Graph) Len() int { return len(g.steps) }

// Needs are the IDs a step needs, sorted.
func (g *Graph) Needs(id string) []string { return append([]string(nil), g.needs[id]...) }

// Dependents are the IDs that need a step, sorted.
func (g *Graph) Dependents(id string) []string { return append([]string(nil), g.dependents[id]...) }

// Ancestors is the set of steps id needs, directly or not (id excluded).
func (g *Graph) Ancestors(id string) map[string]bool {
	return g.closure(id, g.needs)
}

// Descendants is the set of steps that need id, directly or not.
func (g *Graph) Descendants(id string) map[string]bool {
	return g.closure(id, g.dependents)
}

func (g *Graph) closure(id string, edges map[string][]string) map[string]bool {
	out := map[string]bool{}
	stack := append([]string(nil), edges[id]...)
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if out[v] {
			continue
		}
		out[v] = true
		stack = append(stack, edges[v]...)
	}
	return out
}
