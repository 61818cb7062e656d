package plans

// Symbol is the one-character mark of an action in text and markdown plans.
func Symbol(a Action) string {
	switch a {
	case ActionNone:
		return "✓"
	case ActionCreate:
		return "+"
	case ActionChange:
		return "~"
	case ActionDestroy:
		return "-"
	case ActionWarning:
		return "!"
	case ActionBlocker:
		return "✗"
	case ActionUninspected:
		return "?"
	}
	return " "
}

// legendOrder is the order actions appear in the legend.
var legendOrder = []Action{ActionCreate, ActionChange, ActionDestroy, ActionNone, ActionWarning, ActionBlocker, ActionUninspected}

// legendWord names an action in the legend.
func legendWord(a Action) string {
	switch a {
	case ActionNone:
		return "in place"
	case ActionCreate:
		return "create"
	case ActionChange:
		return "change"
	case ActionDestroy:
		return "destroy"
	case ActionWarning:
		return "warning"
	case ActionBlocker:
		return "blocker"
	case ActionUninspected:
		return "not inspected"
	}
	return string(a)
}

// colour codes per action (ANSI), used only when the text renderer is told
// the output is a terminal.
func colour(a Action) string {
	switch a {
	case ActionNone, ActionCreate:
		return "\x1b[32m" // green
	case ActionChange, ActionWarning:
		return "\x1b[33m" // yellow
	case ActionDestroy, ActionBlocker:
		return "\x1b[31m" // red
	case ActionUninspected:
		return "\x1b[36m" // cyan
	}
	return ""
}

const (
	ansiReset = "\x1b[0m"
	ansiBold  = "\x1b[1m"
)
