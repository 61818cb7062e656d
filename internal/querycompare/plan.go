package querycompare

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Node is one node of a plan as EXPLAIN (FORMAT JSON) gives it; only the
// fields pgshift reads.
type Node struct {
	NodeType           string  `json:"Node Type"`
	Strategy           string  `json:"Strategy,omitempty"`
	PartialMode        string  `json:"Partial Mode,omitempty"`
	JoinType           string  `json:"Join Type,omitempty"`
	ParentRelationship string  `json:"Parent Relationship,omitempty"`
	SubplanName        string  `json:"Subplan Name,omitempty"`
	RelationName       string  `json:"Relation Name,omitempty"`
	Alias              string  `json:"Alias,omitempty"`
	IndexName          string  `json:"Index Name,omitempty"`
	CTEName            string  `json:"CTE Name,omitempty"`
	FunctionName       string  `json:"Function Name,omitempty"`
	ParallelAware      bool    `json:"Parallel Aware,omitempty"`
	TotalCost          float64 `json:"Total Cost"`
	PlanRows           float64 `json:"Plan Rows"`
	ActualTotalTime    float64 `json:"Actual Total Time,omitempty"`
	ActualRows         float64 `json:"Actual Rows,omitempty"`
	ActualLoops        float64 `json:"Actual Loops,omitempty"`
	SharedHitBlocks    int64   `json:"Shared Hit Blocks,omitempty"`
	SharedReadBlocks   int64   `json:"Shared Read Blocks,omitempty"`
	Plans              []*Node `json:"Plans,omitempty"`
}

// Explained is one EXPLAIN's result: the plan and, with ANALYZE, the times.
type Explained struct {
	Plan          *Node   `json:"Plan"`
	PlanningTime  float64 `json:"Planning Time"`
	ExecutionTime float64 `json:"Execution Time"`
	// Raw is EXPLAIN's JSON as the server printed it.
	Raw json.RawMessage `json:"-"`
}

// ParseExplain reads EXPLAIN (FORMAT JSON)'s output: a one-element array.
func ParseExplain(raw []byte) (*Explained, error) {
	var out []Explained
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("read EXPLAIN's JSON: %w", err)
	}
	if len(out) != 1 || out[0].Plan == nil {
		return nil, fmt.Errorf("read EXPLAIN's JSON: want one plan, got %d", len(out))
	}
	e := out[0]
	e.Raw = append(json.RawMessage(nil), raw...)
	return &e, nil
}

// label is a node as one line of a plan tree names it: the node type
// with what the shape compares (strategy, join type, relation, index).
func (n *Node) label() string {
	var b strings.Builder
	if n.ParallelAware {
		b.WriteString("Parallel ")
	}
	if n.PartialMode != "" && n.PartialMode != "Simple" {
		b.WriteString(n.PartialMode + " ")
	}
	b.WriteString(n.NodeType)
	if n.Strategy != "" && n.Strategy != "Plain" {
		b.WriteString(" (" + n.Strategy + ")")
	}
	if n.JoinType != "" && n.JoinType != "Inner" {
		b.WriteString(" " + n.JoinType)
	}
	if n.IndexName != "" {
		b.WriteString(" using " + n.IndexName)
	}
	if n.RelationName != "" {
		b.WriteString(" on " + n.RelationName)
		if n.Alias != "" && n.Alias != n.RelationName {
			b.WriteString(" " + n.Alias)
		}
	}
	if n.CTEName != "" {
		b.WriteString(" on " + n.CTEName)
	}
	if n.FunctionName != "" {
		b.WriteString(" on " + n.FunctionName)
	}
	return b.String()
}

// Tree is the plan as indented lines, with the actual time and rows of
// each node when it ran (analyzed), its estimated cost otherwise.
func (n *Node) Tree(analyzed bool) string {
	var b strings.Builder
	var walk func(n *Node, depth int)
	walk = func(n *Node, depth int) {
		indent := strings.Repeat("  ", depth)
		if depth > 0 {
			indent += "-> "
		}
		if n.SubplanName != "" {
			b.WriteString(strings.Repeat("  ", depth) + n.SubplanName + "\n")
		}
		b.WriteString(indent + n.label())
		if analyzed {
			fmt.Fprintf(&b, "  (actual %.3f ms, %s rows, %s loops; shared hit %d read %d)", n.ActualTotalTime, num(n.ActualRows), num(n.ActualLoops), n.SharedHitBlocks, n.SharedReadBlocks)
		} else {
			fmt.Fprintf(&b, "  (cost %.2f, %s rows estimated)", n.TotalCost, num(n.PlanRows))
		}
		b.WriteString("\n")
		for _, c := range n.Plans {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return b.String()
}

func num(f float64) string {
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%.1f", f)
}
