package spec

import (
	"strings"
)

// yaml.v3 places some indentation errors where the enclosing mapping
// starts ("line 3: did not find expected key" for a stray item on line 5).
// indentationFault finds the line that breaks the indentation, so that the
// error names it: the first line, at or after from, that is indented
// deeper than a line that opened no block, that dedents to a level no
// enclosing block uses, or that starts a list item among a mapping's keys.
// It knows enough YAML for specs (mappings, lists, comments, block scalars,
// flow collections on one line); 0 means nothing found.
func indentationFault(data []byte, from int) (line, col int) {
	type level struct {
		indent int
		mapKey bool // the last line at this level was a "key: value" that opened nothing
	}
	stack := []level{{indent: 0}}
	opened := false // the previous content line ends with "key:" or "-": a deeper block may follow
	scalarAt := -1  // inside a block scalar (| or >): lines deeper than this are its text
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		text := strings.TrimRight(raw, " \t\r")
		content := strings.TrimLeft(text, " ")
		indent := len(text) - len(content)
		if content == "" || strings.HasPrefix(content, "#") {
			continue
		}
		if scalarAt >= 0 {
			if indent > scalarAt {
				continue
			}
			scalarAt = -1
		}
		if n == 1 && (strings.HasPrefix(content, "---") || strings.HasPrefix(content, "%")) {
			continue
		}
		fault := false
		top := &stack[len(stack)-1]
		switch {
		case indent > top.indent:
			fault = !opened
			stack = append(stack, level{indent: indent})
		case indent < top.indent:
			for len(stack) > 1 && stack[len(stack)-1].indent > indent {
				stack = stack[:len(stack)-1]
			}
			fault = stack[len(stack)-1].indent != indent
		default:
			// A list item where the level holds "key: value" lines: YAML
			// allows a list under a key at the key's own indentation only
			// right after that key.
			fault = strings.HasPrefix(content, "- ") && top.mapKey && !opened
		}
		if fault && n >= from {
			return n, indent + 1
		}
		if fault {
			// Before yaml.v3's line the document parsed: not the fault.
			stack[len(stack)-1].indent = indent
		}

		body := stripComment(content)
		isItem := body == "-" || strings.HasPrefix(body, "- ")
		item := body
		if isItem {
			item = strings.TrimSpace(strings.TrimPrefix(body, "-"))
		}
		key := isMappingKey(item)
		opened = body == "-" || strings.HasSuffix(body, ":") || (isItem && strings.HasSuffix(item, ":"))
		cur := &stack[len(stack)-1]
		cur.mapKey = !isItem && key && !opened
		if isItem && key {
			// "- key: value": the item's further keys line up with key.
			inner := indent + (len(content) - len(strings.TrimLeft(strings.TrimPrefix(content, "-"), " ")))
			stack = append(stack, level{indent: inner, mapKey: !opened})
		}
		if strings.HasSuffix(body, "|") || strings.HasSuffix(body, ">") || strings.HasSuffix(body, "|-") || strings.HasSuffix(body, ">-") {
			scalarAt, opened = indent, false
		}
	}
	return 0, 0
}

// eachUnquoted calls fn for each rune of s outside single or double
// quotes, with its byte offset, until fn returns false.
func eachUnquoted(s string, fn func(i int, r rune) bool) {
	inQuote := rune(0)
	for i, r := range s {
		switch {
		case inQuote != 0:
			if r == inQuote {
				inQuote = 0
			}
		case r == '"' || r == '\'':
			inQuote = r
		default:
			if !fn(i, r) {
				return
			}
		}
	}
}

// isMappingKey says whether s starts with "key:" (a colon followed by a
// space or the end, outside quotes and flow collections).
func isMappingKey(s string) bool {
	key := false
	eachUnquoted(s, func(i int, r rune) bool {
		switch {
		case r == '[' || r == '{':
			return false
		case r == ':' && (i+1 == len(s) || s[i+1] == ' '):
			key = true
			return false
		}
		return true
	})
	return key
}

// stripComment removes a trailing " # comment" outside quotes.
func stripComment(s string) string {
	out := s
	eachUnquoted(s, func(i int, r rune) bool {
		if r == '#' && (i == 0 || s[i-1] == ' ') {
			out = strings.TrimRight(s[:i], " ")
			return false
		}
		return true
	})
	return out
}

// unclosedFlow finds, at or after from, the first line whose [ or { is not
// closed on it: yaml.v3 names the line where the enclosing mapping starts.
func unclosedFlow(data []byte, from int) (line, col int) {
	for i, raw := range strings.Split(string(data), "\n") {
		if i+1 < from {
			continue
		}
		body := stripComment(raw)
		depth, first := 0, -1
		eachUnquoted(body, func(j int, r rune) bool {
			switch r {
			case '[', '{':
				if depth == 0 {
					first = j
				}
				depth++
			case ']', '}':
				depth--
			}
			return true
		})
		if depth > 0 {
			return i + 1, first + 1
		}
	}
	return 0, 0
}
