package plans

import (
	"fmt"
	"strings"
)

// ListFold is how many items of a finding's object list the text and
// markdown renderers show before "- and N more". JSON always carries all.
const ListFold = 10

// listItem opens each line of a finding's object list.
const listItem = "- "

// ObjectList writes names as a finding's object list: a newline, then one
// "- name" line per name. A finding ending with it carries every name in
// JSON; Text and Markdown show the first ListFold and fold the rest as
// "- and N more".
func ObjectList(names []string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString("\n" + listItem + n)
	}
	return b.String()
}

// FoldLists shortens each run of more than ListFold object-list lines of a
// finding to its first ListFold lines and "- and N more": what the text and
// markdown renderers (the plan's and the audit report's) show.
func FoldLists(s string) string {
	lines := strings.Split(s, "\n")
	out := make([]string, 0, len(lines))
	run := 0
	for i, l := range lines {
		if i == 0 || !strings.HasPrefix(l, listItem) {
			run = 0
			out = append(out, l)
			continue
		}
		run++
		if run <= ListFold {
			out = append(out, l)
			continue
		}
		if run == ListFold+1 {
			n := 0
			for _, rest := range lines[i:] {
				if !strings.HasPrefix(rest, listItem) {
					break
				}
				n++
			}
			out = append(out, fmt.Sprintf("%sand %d more", listItem, n))
		}
	}
	return strings.Join(out, "\n")
}
