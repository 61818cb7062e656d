package steps

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
)

// systemSet is one parameter of target.settings: what green has and what
// applying does.
type systemSet struct {
	name, value string // as the spec writes it
	current     string // green's value now, as SHOW writes it
	context     string // pg_settings.context: postmaster needs a restart
	file        *string
	// write: ALTER SYSTEM SET is needed; reload: it is written but green
	// has not read it yet; restart: written, and only a restart applies it.
	write, reload, restart bool
}

// dbRoleSet is one database or role setting of blue that applying sets on
// green.
type dbRoleSet struct {
	key      settingKey
	value    string  // blue's, mapped to green's major
	green    *string // green's value in the same scope, nil when unset
	blueName string  // blue's parameter name when it was renamed
}

// ownerSet gives green's database blue's owner.
type ownerSet struct{ from, to string }

// settingsPlan is what the settings step would do on green.
type settingsPlan struct {
	blueMajor, greenMajor int
	greenDB               string
	system                []systemSet
	sets                  []dbRoleSet
	owner                 *ownerSet
	details               []string // what is only named: server differences, extensions
	rolesCopied           bool     // schema.roles: target.roles creates blue's roles on green first
	warnings, blockers    []string
}

func (p *settingsPlan) reloadNeeded() bool {
	for _, s := range p.system {
		if s.write || s.reload {
			return true
		}
	}
	return false
}

func (p *settingsPlan) pendingRestart() []string {
	var out []string
	for _, s := range p.system {
		if s.restart {
			out = append(out, s.name)
		}
	}
	return out
}

// plan compares blue's settings with green's, and green's with the spec.
func (settingsStep) plan(ctx context.Context, env *engine.Env) (*settingsPlan, error) {
	blue, green, err := env.Pools(ctx)
	if err != nil {
		return nil, err
	}
	p := &settingsPlan{}
	if p.blueMajor, err = pg.ServerMajor(ctx, blue); err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	if p.greenMajor, err = pg.ServerMajor(ctx, green); err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	var greenSuper bool
	if err := green.QueryRow(ctx, `SELECT pg_catalog.current_database(), rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user`).
		Scan(&p.greenDB, &greenSuper); err != nil {
		return nil, fmt.Errorf("green: read the database and the connecting role: %w", err)
	}
	blueSettings, err := readServerSettings(ctx, blue)
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	greenSettings, err := readServerSettings(ctx, green)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	var walSeg int64 = 16 << 20
	if s, ok := blueSettings["wal_segment_size"]; ok {
		if n, ok := inBaseUnit(s.setting, s.unit); ok {
			walSeg = int64(n)
		}
	}
	if err := p.planSystem(ctx, env, green, greenSuper, greenSettings); err != nil {
		return nil, err
	}
	if err := p.compareServer(env, blueSettings, greenSettings, walSeg); err != nil {
		return nil, err
	}
	// With schema.roles, target.roles (which this step needs) creates
	// blue's missing roles on green before this step applies.
	p.rolesCopied = env.Spec.Schema.Roles
	if err := p.planDBRole(ctx, blue, green, greenSettings, walSeg); err != nil {
		return nil, err
	}
	if err := p.planOwner(ctx, blue, green); err != nil {
		return nil, err
	}
	ext, extWarn, err := extensionLines(ctx, blue, green)
	if err != nil {
		return nil, err
	}
	p.details = append(p.details, ext...)
	p.warnings = append(p.warnings, extWarn...)
	return p, nil
}

// planSystem checks each parameter of target.settings against green.
func (p *settingsPlan) planSystem(ctx context.Context, env *engine.Env, green pg.Querier, greenSuper bool, greenSettings map[string]serverSetting) error {
	if len(env.Spec.Target.Settings) == 0 {
		return nil
	}
	auto, readable, err := readAutoConf(ctx, green)
	if err != nil {
		return fmt.Errorf("green: %w", err)
	}
	names := make([]string, 0, len(env.Spec.Target.Settings))
	for n := range env.Spec.Target.Settings {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		value := env.Spec.Target.Settings[name]
		if secretParam(name) {
			p.blockers = append(p.blockers, fmt.Sprintf("target.settings.%s: parameter %s may hold a secret, which pgshift never sets, shows or records: set it in green's configuration yourself and remove it from target.settings", name, name))
			continue
		}
		gs, ok := greenSettings[name]
		if !ok {
			msg := fmt.Sprintf("target.settings.%s: green (PostgreSQL %d) has no parameter %s", name, p.greenMajor, name)
			switch hint := renameHint(name, p.greenMajor); {
			case hint != "" && renamedParams[name].to != "" && p.greenMajor >= renamedParams[name].since:
				msg += fmt.Sprintf(": %s; write %s instead", hint, renamedParams[name].to)
			case hint != "":
				msg += ": " + hint + "; remove it from target.settings"
			case strings.Contains(name, "."):
				msg += ": it belongs to an extension that green has not loaded; add the extension to green's shared_preload_libraries (and restart green) first, or remove it from target.settings"
			default:
				msg += ": check its spelling against green's pg_settings"
			}
			p.blockers = append(p.blockers, msg)
			continue
		}
		if gs.context == "internal" {
			p.blockers = append(p.blockers, fmt.Sprintf("target.settings.%s: %s is fixed when green was built or initialized (read-only): remove it from target.settings", name, name))
			continue
		}
		if !greenSuper {
			can := false
			if p.greenMajor >= 15 {
				if can, err = pg.Scalar[bool](ctx, green, `SELECT has_parameter_privilege($1, 'ALTER SYSTEM')`, name); err != nil {
					return fmt.Errorf("green: check the privilege to ALTER SYSTEM %s: %w", name, err)
				}
			}
			if !can {
				p.blockers = append(p.blockers, fmt.Sprintf("target.settings.%s: green's role is not a superuser and may not ALTER SYSTEM SET %s: connect to green as a superuser, or GRANT ALTER SYSTEM ON PARAMETER %s TO <role> (PostgreSQL 15+)", name, name, name))
				continue
			}
		}
		want := gs.canonOf(value)
		s := systemSet{name: name, value: value, current: gs.shown(), context: gs.context}
		if readable {
			if v, ok := auto[name]; ok {
				s.file = &v
			}
		}
		written := s.file != nil && gs.canonOf(*s.file) == want
		switch {
		case gs.canon() == want && (s.file == nil || written):
			// in place
		case written && gs.context == "postmaster":
			s.restart = true
		case written:
			s.reload = true
		default:
			s.write = true
			s.restart = gs.context == "postmaster"
		}
		p.system = append(p.system, s)
	}
	return nil
}

// compareServer names blue's server-level settings that green does not
// share: it sets none of them (target.settings does), but says which are
// removed or renamed in green's major.
func (p *settingsPlan) compareServer(env *engine.Env, blue, green map[string]serverSetting, walSeg int64) error {
	chosen := env.Spec.Target.Settings
	names := make([]string, 0, len(blue))
	for n := range blue {
		names = append(names, n)
	}
	sort.Strings(names)
	var differ []string
	for _, name := range names {
		b := blue[name]
		if !b.serverLevel() || neverCompared[name] != "" || secretParam(name) {
			continue
		}
		m, err := mapParam(name, b.setting, p.blueMajor, p.greenMajor, walSeg)
		if err != nil {
			return fmt.Errorf("blue: %w", err)
		}
		if _, ok := chosen[m.name]; ok {
			continue
		}
		if m.removedIn > 0 {
			p.warnings = append(p.warnings, fmt.Sprintf("blue's configuration sets %s = %s: removed in PostgreSQL %d (%s): drop it; it is not carried to green",
				name, b.shown(), m.removedIn, m.note))
			continue
		}
		g, ok := green[m.name]
		if !ok {
			p.warnings = append(p.warnings, fmt.Sprintf("blue's configuration sets %s = %s and green has no parameter %s: load the extension it belongs to on green (shared_preload_libraries), or drop it",
				name, b.shown(), m.name))
			continue
		}
		blueShown, blueCanon := b.shown(), b.canon()
		if m.renamed != "" {
			blueShown, blueCanon = m.value, g.canonOf(m.value)
			if m.value == b.setting {
				blueShown, blueCanon = b.shown(), g.canonOf(b.shown())
			}
		}
		if blueCanon == g.canon() {
			continue
		}
		label := name
		if m.renamed != "" {
			label = fmt.Sprintf("%s (blue's %s, renamed in PostgreSQL %d)", m.name, name, renamedParams[name].since)
		}
		if name == "shared_preload_libraries" {
			p.warnings = append(p.warnings, fmt.Sprintf("shared_preload_libraries: blue loads %q, green %q: install the libraries on green's host and set shared_preload_libraries in green's configuration (or in target.settings), then restart green; pgshift does not change it by itself",
				b.setting, g.setting))
			continue
		}
		p.details = append(p.details, fmt.Sprintf("-- server: %s: blue %s (%s), green %s (%s): not in target.settings, left as it is",
			label, blueShown, b.source, g.shown(), g.source))
		differ = append(differ, m.name)
	}
	if len(differ) > 0 {
		p.warnings = append(p.warnings, fmt.Sprintf("%s of blue %s green's: %s; add to target.settings those green should have (the plan lines show both values)",
			words.Plural(len(differ), "server setting", "server settings"), words.Pick(len(differ), "differs from", "differ from"), words.List(differ)))
	}
	// What green sets and blue leaves at its default.
	gnames := make([]string, 0, len(green))
	for n := range green {
		gnames = append(gnames, n)
	}
	sort.Strings(gnames)
	for _, name := range gnames {
		g := green[name]
		if !g.serverLevel() || neverCompared[name] != "" || secretParam(name) {
			continue
		}
		if _, ok := chosen[name]; ok {
			continue
		}
		b, ok := blue[name]
		if !ok || b.serverLevel() || b.canon() == g.canon() {
			continue
		}
		p.details = append(p.details, fmt.Sprintf("-- server: %s: green %s (%s), blue %s (%s)", name, g.shown(), g.source, b.shown(), b.source))
	}
	return nil
}

// planDBRole lists blue's database and role settings that green lacks.
func (p *settingsPlan) planDBRole(ctx context.Context, blue, green pg.Querier, greenSettings map[string]serverSetting, walSeg int64) error {
	blueSet, err := readDBRoleSettings(ctx, blue)
	if err != nil {
		return fmt.Errorf("blue: %w", err)
	}
	greenSet, err := readDBRoleSettings(ctx, green)
	if err != nil {
		return fmt.Errorf("green: %w", err)
	}
	greenRoles := map[string]bool{}
	rows, err := green.Query(ctx, `SELECT rolname FROM pg_catalog.pg_roles`)
	if err != nil {
		return fmt.Errorf("green: list roles: %w", err)
	}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return fmt.Errorf("green: list roles: %w", err)
		}
		greenRoles[r] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("green: list roles: %w", err)
	}
	keys := make([]settingKey, 0, len(blueSet))
	for k := range blueSet {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.Role != b.Role {
			return a.Role < b.Role
		}
		if a.InDB != b.InDB {
			return a.InDB
		}
		return a.Name < b.Name
	})
	missingRoles := map[string][]string{}
	for _, k := range keys {
		value := blueSet[k]
		where := k.describe(p.greenDB)
		if k.Role != "" && skippedRole(k.Role) {
			continue
		}
		if k.Role != "" && !greenRoles[k.Role] && !p.rolesCopied {
			missingRoles[k.Role] = append(missingRoles[k.Role], k.Name)
			continue
		}
		m, err := mapParam(k.Name, value, p.blueMajor, p.greenMajor, walSeg)
		if err != nil {
			return fmt.Errorf("blue: %s: %w", where, err)
		}
		gk := settingKey{settingScope: k.settingScope, Name: m.name}
		if secretParam(k.Name) {
			if _, ok := greenSet[gk]; !ok {
				p.warnings = append(p.warnings, fmt.Sprintf("%s sets %s on blue, which may hold a secret: pgshift does not copy it; set it on green yourself (%s SET %s TO ...)",
					where, k.Name, k.alterSQL(p.greenDB), pg.QuoteIdent(k.Name)))
			}
			continue
		}
		if m.removedIn > 0 {
			p.warnings = append(p.warnings, fmt.Sprintf("%s sets %s = %s on blue: removed in PostgreSQL %d (%s): not copied; drop it on blue (%s RESET %s;)",
				where, k.Name, value, m.removedIn, m.note, k.alterSQL(p.greenDB), pg.QuoteIdent(k.Name)))
			continue
		}
		if _, ok := greenSettings[strings.ToLower(m.name)]; !ok && !strings.Contains(m.name, ".") {
			p.warnings = append(p.warnings, fmt.Sprintf("%s sets %s on blue and green (PostgreSQL %d) has no such parameter: not copied; drop it on blue (%s RESET %s;)",
				where, k.Name, p.greenMajor, k.alterSQL(p.greenDB), pg.QuoteIdent(k.Name)))
			continue
		}
		s := dbRoleSet{key: gk, value: m.value}
		if m.renamed != "" {
			s.blueName = m.renamed
		}
		if g, ok := greenSet[gk]; ok {
			if sameStored(gk.Name, g, m.value) {
				continue
			}
			s.green = &g
		}
		p.sets = append(p.sets, s)
	}
	roles := make([]string, 0, len(missingRoles))
	for r := range missingRoles {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range roles {
		p.warnings = append(p.warnings, fmt.Sprintf("role %s has settings on blue (%s) and green has no such role: they are not copied; create the role on green (schema.roles: true copies it) and plan again",
			r, strings.Join(missingRoles[r], ", ")))
	}
	// What green sets and blue does not: left as it is, named.
	gkeys := make([]settingKey, 0)
	for k := range greenSet {
		if _, ok := blueSet[k]; !ok && !secretParam(k.Name) {
			gkeys = append(gkeys, k)
		}
	}
	sort.Slice(gkeys, func(i, j int) bool {
		return gkeys[i].describe(p.greenDB)+gkeys[i].Name < gkeys[j].describe(p.greenDB)+gkeys[j].Name
	})
	for _, k := range gkeys {
		renamedFromBlue := false
		for _, s := range p.sets {
			if s.key == k {
				renamedFromBlue = true
			}
		}
		if !renamedFromBlue {
			p.details = append(p.details, fmt.Sprintf("-- %s on green also sets %s = %s (blue does not): left as it is", k.describe(p.greenDB), k.Name, greenSet[k]))
		}
	}
	return nil
}

// planOwner gives green's database blue's owner, when green has that role.
func (p *settingsPlan) planOwner(ctx context.Context, blue, green pg.Querier) error {
	const q = `SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()`
	blueOwner, err := pg.Scalar[string](ctx, blue, q)
	if err != nil {
		return fmt.Errorf("blue: read the database owner: %w", err)
	}
	greenOwner, err := pg.Scalar[string](ctx, green, q)
	if err != nil {
		return fmt.Errorf("green: read the database owner: %w", err)
	}
	if blueOwner == greenOwner {
		return nil
	}
	if skippedRole(blueOwner) {
		p.details = append(p.details, fmt.Sprintf("-- owner: blue's database is owned by %s (%s): green's stays owned by %s", blueOwner, skipReason(blueOwner), greenOwner))
		return nil
	}
	exists, err := pg.Scalar[bool](ctx, green, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)`, blueOwner)
	if err != nil {
		return fmt.Errorf("green: look up role %s: %w", blueOwner, err)
	}
	if !exists && !p.rolesCopied {
		p.warnings = append(p.warnings, fmt.Sprintf("blue's database is owned by %s and green has no such role: green's database %s stays owned by %s; create the role on green (schema.roles: true copies it) and plan again",
			blueOwner, pg.ShowIdent(p.greenDB), greenOwner))
		return nil
	}
	p.owner = &ownerSet{from: greenOwner, to: blueOwner}
	return nil
}

func ownerSQL(db, role string) string {
	return "ALTER DATABASE " + pg.QuoteIdent(db) + " OWNER TO " + pg.QuoteIdent(role)
}

func alterSystemSQL(name, value string) string {
	return "ALTER SYSTEM SET " + pg.QuoteIdent(name) + " TO " + setValueSQL(name, value)
}

// change is the plan's view of p.
func (p *settingsPlan) change() plans.Change {
	c := plans.Change{}
	var system, reload int
	for _, s := range p.system {
		switch {
		case s.write:
			line := alterSystemSQL(s.name, s.value) + " -- green: " + s.current
			if s.restart {
				line += "; needs a restart of green"
			}
			c.Details = append(c.Details, line)
			system++
		case s.reload:
			reload++
		}
		if s.restart {
			c.Warnings = append(c.Warnings, fmt.Sprintf("target.settings.%s = %s takes effect only when green restarts (green runs %s): restart green before the cutover",
				s.name, s.value, s.current))
		}
	}
	if p.reloadNeeded() {
		c.Details = append(c.Details, "SELECT pg_catalog.pg_reload_conf()")
	}
	var dbSets, roleSets int
	for _, s := range p.sets {
		line := s.key.setSQL(p.greenDB, s.value)
		switch {
		case s.blueName != "":
			line += fmt.Sprintf(" -- blue's %s, renamed in PostgreSQL %d", s.blueName, renamedParams[s.blueName].since)
		case s.green != nil:
			line += " -- green: " + *s.green
		}
		c.Details = append(c.Details, line)
		if s.key.Role == "" && s.key.InDB {
			dbSets++
		} else {
			roleSets++
		}
	}
	if p.owner != nil {
		c.Details = append(c.Details, ownerSQL(p.greenDB, p.owner.to)+" -- green: "+p.owner.from)
	}
	c.Details = append(c.Details, p.details...)
	c.Warnings = append(c.Warnings, p.warnings...)
	c.Blockers = append(c.Blockers, p.blockers...)

	var parts []string
	if system > 0 {
		parts = append(parts, "set "+words.Plural(system, "server parameter", "server parameters"))
	}
	if reload > 0 && system == 0 {
		parts = append(parts, "reload green's configuration")
	}
	if dbSets > 0 {
		parts = append(parts, words.Plural(dbSets, "database setting", "database settings"))
	}
	if roleSets > 0 {
		parts = append(parts, words.Plural(roleSets, "role setting", "role settings"))
	}
	if p.owner != nil {
		parts = append(parts, "the database owner")
	}
	switch {
	case len(p.blockers) > 0:
		c.Action = plans.ActionBlocker
		c.Summary = fmt.Sprintf("green's settings: %s", words.Plural(len(p.blockers), "problem", "problems"))
	case len(parts) > 0:
		c.Action = plans.ActionChange
		c.Summary = strings.Join(parts, ", ") + " on green"
		if !strings.HasPrefix(c.Summary, "set ") && !strings.HasPrefix(c.Summary, "reload") {
			c.Summary = "set " + c.Summary
		}
	case len(c.Warnings) > 0:
		c.Action = plans.ActionWarning
		c.Summary = fmt.Sprintf("green has blue's database and role settings; %s to read", words.Plural(len(c.Warnings), "difference", "differences"))
	default:
		c.Action = plans.ActionNone
		c.Summary = "green has blue's database and role settings and target.settings"
	}
	return c
}
