package querycompare

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Shape is what a plan chose, without numbers: its nodes in tree order,
// how each relation is scanned, the order the relations are reached in
// (the join order), and the indexes used. Two plans with equal shapes
// differ only in estimates and times.
type Shape struct {
	Nodes     []string            `json:"nodes"`      // "depth:label", preorder
	Access    map[string][]string `json:"access"`     // relation (alias) -> scan labels
	JoinOrder []string            `json:"join_order"` // relations in the order the tree reaches them
	Indexes   []string            `json:"indexes"`    // sorted, unique
}

// ShapeOf walks a plan tree.
func ShapeOf(root *Node) Shape {
	s := Shape{Access: map[string][]string{}}
	idx := map[string]bool{}
	var walk func(n *Node, depth int)
	walk = func(n *Node, depth int) {
		s.Nodes = append(s.Nodes, fmt.Sprintf("%d:%s", depth, n.label()))
		if n.RelationName != "" {
			rel := n.RelationName
			if n.Alias != "" && n.Alias != n.RelationName {
				rel += " " + n.Alias
			}
			s.Access[rel] = append(s.Access[rel], scanLabel(n))
			s.JoinOrder = append(s.JoinOrder, rel)
		}
		if n.IndexName != "" {
			idx[n.IndexName] = true
		}
		for _, c := range n.Plans {
			walk(c, depth+1)
		}
	}
	if root != nil {
		walk(root, 0)
	}
	s.Indexes = slices.Sorted(maps.Keys(idx))
	return s
}

// scanLabel is how a node reads its relation: "Index Scan using i"; a
// bitmap heap scan names the indexes of its bitmap index scans.
func scanLabel(n *Node) string {
	l := n.NodeType
	if n.ParallelAware {
		l = "Parallel " + l
	}
	idx := bitmapIndexes(n)
	if n.IndexName != "" {
		idx = []string{n.IndexName}
	}
	if len(idx) > 0 {
		l += " using " + strings.Join(idx, ", ")
	}
	return l
}

// bitmapIndexes are the indexes a bitmap heap scan's bitmap index scans
// read, under BitmapAnd and BitmapOr.
func bitmapIndexes(n *Node) []string {
	if n.NodeType != "Bitmap Heap Scan" {
		return nil
	}
	var out []string
	var walk func(n *Node)
	walk = func(n *Node) {
		for _, c := range n.Plans {
			switch c.NodeType {
			case "Bitmap Index Scan":
				out = append(out, c.IndexName)
			case "BitmapAnd", "BitmapOr":
				walk(c)
			}
		}
	}
	walk(n)
	return out
}

// Same says whether two shapes are equal.
func (s Shape) Same(o Shape) bool { return slices.Equal(s.Nodes, o.Nodes) }

// Differences says how green's shape differs from blue's, most telling
// first: the scans of each relation, the join order, the indexes, the
// nodes added or gone; nil when the shapes are equal.
func Differences(blue, green Shape) []string {
	if blue.Same(green) {
		return nil
	}
	var out []string
	rels := map[string]bool{}
	for r := range blue.Access {
		rels[r] = true
	}
	for r := range green.Access {
		rels[r] = true
	}
	for _, r := range slices.Sorted(maps.Keys(rels)) {
		b, g := blue.Access[r], green.Access[r]
		if !slices.Equal(b, g) {
			out = append(out, fmt.Sprintf("%s: blue %s, green %s", r, orNone(b), orNone(g)))
		}
	}
	if !slices.Equal(blue.JoinOrder, green.JoinOrder) && sameSet(blue.JoinOrder, green.JoinOrder) {
		out = append(out, fmt.Sprintf("join order: blue %s, green %s", strings.Join(blue.JoinOrder, ", "), strings.Join(green.JoinOrder, ", ")))
	}
	if !slices.Equal(blue.Indexes, green.Indexes) {
		out = append(out, fmt.Sprintf("indexes: blue uses %s, green uses %s", orNone(blue.Indexes), orNone(green.Indexes)))
	}
	added, gone := nodeTypeDiff(blue.Nodes, green.Nodes)
	if len(added) > 0 {
		out = append(out, "green adds "+strings.Join(added, ", "))
	}
	if len(gone) > 0 {
		out = append(out, "green drops "+strings.Join(gone, ", "))
	}
	if len(out) == 0 {
		out = append(out, "the same nodes in another arrangement")
	}
	return out
}

// nodeTypeDiff is the multiset difference of the labels of the nodes
// that read no relation (joins, sorts, aggregates, gathers, ...): scans,
// bitmap index scans included, are told apart per relation above.
func nodeTypeDiff(blue, green []string) (added, gone []string) {
	count := func(nodes []string) map[string]int {
		m := map[string]int{}
		for _, n := range nodes {
			_, l, _ := strings.Cut(n, ":")
			if !strings.Contains(l, " on ") && !strings.HasPrefix(l, "Bitmap") {
				m[l]++
			}
		}
		return m
	}
	b, g := count(blue), count(green)
	for _, l := range slices.Sorted(maps.Keys(g)) {
		for i := b[l]; i < g[l]; i++ {
			added = append(added, l)
		}
	}
	for _, l := range slices.Sorted(maps.Keys(b)) {
		for i := g[l]; i < b[l]; i++ {
			gone = append(gone, l)
		}
	}
	return added, gone
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
