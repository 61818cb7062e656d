package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Spec is a loaded, rendered, validated upgrade spec (version 1) with every
// default filled. Field names follow the YAML contract in docs/spec.md: it is
// a user-facing API, so fields are added, never renamed.
type Spec struct {
	Version     int                `yaml:"version" json:"version"`
	Name        string             `yaml:"name" json:"name"`
	Vars        map[string]VarDecl `yaml:"vars,omitempty" json:"vars,omitempty"`
	Source      Endpoint           `yaml:"source" json:"source"`
	Target      Endpoint           `yaml:"target" json:"target"`
	Schema      SchemaSpec         `yaml:"schema" json:"schema"`
	Tables      TablesSpec         `yaml:"tables" json:"tables"`
	Replication ReplicationSpec    `yaml:"replication" json:"replication"`
	Sequences   SequencesSpec      `yaml:"sequences" json:"sequences"`
	Verify      VerifySpec         `yaml:"verify" json:"verify"`
	Cutover     CutoverSpec        `yaml:"cutover" json:"cutover"`
	Metrics     MetricsSpec        `yaml:"metrics" json:"metrics"`
	Watch       WatchSpec          `yaml:"watch" json:"watch"`
	// CompareQueries tunes `pgshift compare-queries`.
	CompareQueries CompareQueriesSpec `yaml:"compare_queries" json:"compare_queries"`
	// State says where the state and its lock live. It is left out of
	// Hash: moving the state does not change what the spec does.
	State StateConfig `yaml:"state" json:"state,omitzero"`

	// File is the path the spec was read from ("" when built in code); the
	// default state file lives beside it.
	File string `yaml:"-" json:"-"`
	// VarValues are the values the templates were rendered with, by
	// variable, so that a command can name one inventory entry with --var.
	VarValues map[string]string `yaml:"-" json:"-"`
}

// VarDecl declares a template variable.
type VarDecl struct {
	Default     *string `yaml:"default,omitempty" json:"default,omitempty"`
	Description string  `yaml:"description,omitempty" json:"description,omitempty"`
}

// Endpoint is one side of the upgrade. DSN never holds a password (the loader
// refuses one); the password comes from PasswordEnv, .pgpass or libpq's own
// mechanisms.
type Endpoint struct {
	DSN         string `yaml:"dsn" json:"dsn"`
	PasswordEnv string `yaml:"password_env,omitempty" json:"password_env,omitempty"`
	// SubscriptionDSN is how the other side's server reaches this one for
	// replication, when that differs from DSN (pgshift may run where the
	// servers' own network is not); empty means DSN.
	SubscriptionDSN string `yaml:"subscription_dsn,omitempty" json:"subscription_dsn,omitempty"`
	// Settings (target only: the schema refuses it under source) are server
	// parameters the target.settings step sets on green with ALTER SYSTEM,
	// by parameter name; values as postgresql.conf takes them ("64MB").
	Settings Settings `yaml:"settings,omitempty" json:"settings,omitempty"`
}

// Settings maps server parameter names to values. A value may be written
// in YAML as a number or a boolean (max_connections: 200); it is kept as
// the text PostgreSQL reads.
type Settings map[string]string

// UnmarshalJSON takes string, number and boolean values as their text.
func (s *Settings) UnmarshalJSON(b []byte) error {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw == nil {
		*s = nil
		return nil
	}
	out := make(Settings, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case string:
			out[k] = x
		case float64:
			out[k] = strconv.FormatFloat(x, 'f', -1, 64)
		case bool:
			out[k] = strconv.FormatBool(x)
		default:
			return fmt.Errorf("target.settings.%s: want a string, number or boolean", k)
		}
	}
	*s = out
	return nil
}

type SchemaSpec struct {
	Copy   bool   `yaml:"copy" json:"copy"`
	Roles  bool   `yaml:"roles" json:"roles"`
	PgDump string `yaml:"pg_dump" json:"pg_dump"`
}

type TablesSpec struct {
	Include []string `yaml:"include" json:"include"`
	Exclude []string `yaml:"exclude" json:"exclude"`
}

type ReplicationSpec struct {
	Publication  string            `yaml:"publication" json:"publication"`
	Subscription string            `yaml:"subscription" json:"subscription"`
	Slot         string            `yaml:"slot" json:"slot"`
	InitialCopy  InitialCopySpec   `yaml:"initial_copy" json:"initial_copy"`
	Options      map[string]string `yaml:"options" json:"options"`
	// DDL is how schema changes made on blue during the sync reach green:
	// "compare" (plan, status and watch compare the two schemas; apply
	// adds what is additive); "capture" (an event trigger replaying blue's
	// DDL on green) is reserved and refused by validation until it exists.
	DDL string `yaml:"ddl" json:"ddl"`
	// OutageTimeout bounds how long catch-up and verify wait for a side
	// they lost (a restart, a failover) to come back; 0 means
	// DefaultOutageTimeout. Left out of the JSON when unset, so that specs
	// without it keep their hash.
	OutageTimeout Duration `yaml:"outage_timeout,omitempty" json:"outage_timeout,omitempty"`
}

// DefaultOutageTimeout is replication.outage_timeout when the spec leaves
// it out: long enough for a restart with crash recovery or a failover.
const DefaultOutageTimeout = 5 * time.Minute

// Outage is replication.outage_timeout, or its default.
func (r ReplicationSpec) Outage() time.Duration {
	if r.OutageTimeout > 0 {
		return r.OutageTimeout.D()
	}
	return DefaultOutageTimeout
}

type InitialCopySpec struct {
	Method                string   `yaml:"method" json:"method"` // subscription | snapshot
	Workers               int      `yaml:"workers" json:"workers"`
	SplitTablesLargerThan ByteSize `yaml:"split_tables_larger_than" json:"split_tables_larger_than"`
}

type SequencesSpec struct {
	Margin int64 `yaml:"margin" json:"margin"`
}

type VerifySpec struct {
	Mode    string `yaml:"mode" json:"mode"` // count | checksum
	Workers int    `yaml:"workers" json:"workers"`
}

type CutoverSpec struct {
	Approval           string     `yaml:"approval" json:"approval"` // manual | auto
	MaxLagBytes        int64      `yaml:"max_lag_bytes" json:"max_lag_bytes"`
	PauseTimeout       Duration   `yaml:"pause_timeout" json:"pause_timeout"`
	Freeze             string     `yaml:"freeze" json:"freeze"` // pooler | read-only | both
	ReverseReplication bool       `yaml:"reverse_replication" json:"reverse_replication"`
	Switch             SwitchSpec `yaml:"switch" json:"switch"`
	// Confirm, when set, is the application's path through the switch:
	// after the unfreeze pgshift writes through it and checks the write
	// landed on green.
	Confirm *ConfirmSpec `yaml:"confirm,omitempty" json:"confirm,omitempty"`
}

// ConfirmSpec is a client connection through the switch (PgBouncer,
// HAProxy or whatever the exec hook moves). DSN never holds a password.
type ConfirmSpec struct {
	DSN         string `yaml:"dsn" json:"dsn"`
	PasswordEnv string `yaml:"password_env,omitempty" json:"password_env,omitempty"`
}

// SwitchSpec holds exactly one driver.
type SwitchSpec struct {
	PgBouncer *PgBouncerSwitch `yaml:"pgbouncer,omitempty" json:"pgbouncer,omitempty"`
	HAProxy   *HAProxySwitch   `yaml:"haproxy,omitempty" json:"haproxy,omitempty"`
	Exec      *ExecSwitch      `yaml:"exec,omitempty" json:"exec,omitempty"`
}

type PgBouncerSwitch struct {
	AdminDSN         string `yaml:"admin_dsn" json:"admin_dsn"`
	AdminPasswordEnv string `yaml:"admin_password_env,omitempty" json:"admin_password_env,omitempty"`
	Config           string `yaml:"config" json:"config"`
	Database         string `yaml:"database" json:"database"`
}

type HAProxySwitch struct {
	Socket      string `yaml:"socket" json:"socket"` // unix socket path or host:port
	Backend     string `yaml:"backend" json:"backend"`
	BlueServer  string `yaml:"blue_server" json:"blue_server"`
	GreenServer string `yaml:"green_server" json:"green_server"`
}

type ExecSwitch struct {
	Switch []string `yaml:"switch" json:"switch"`
	Back   []string `yaml:"back" json:"back"`
}

type MetricsSpec struct {
	Listen string `yaml:"listen" json:"listen"`
}

// CompareQueriesSpec tunes `pgshift compare-queries`: what is compared and
// what counts as a regression. The command's flags override it.
type CompareQueriesSpec struct {
	Top              int      `yaml:"top" json:"top"`
	Rounds           int      `yaml:"rounds" json:"rounds"`
	MaxRatio         float64  `yaml:"max_ratio" json:"max_ratio"`
	MinDiff          Duration `yaml:"min_diff" json:"min_diff"`
	StatementTimeout Duration `yaml:"statement_timeout" json:"statement_timeout"`
	QueriesFile      string   `yaml:"queries_file" json:"queries_file"`
}

// WatchSpec tunes `pgshift watch`, which guards blue and the replication
// between apply and cleanup.
type WatchSpec struct {
	// Listen serves /metrics and /healthz; empty means metrics.listen, or
	// DefaultWatchListen when that is empty too.
	Listen         string   `yaml:"listen" json:"listen"`
	Interval       Duration `yaml:"interval" json:"interval"`
	MaxRetainedWAL ByteSize `yaml:"max_retained_wal" json:"max_retained_wal"`
	MaxLag         ByteSize `yaml:"max_lag" json:"max_lag"`
	// VerifyEvery runs a verify that often; 0 never.
	VerifyEvery Duration `yaml:"verify_every" json:"verify_every"`
}

// StateConfig is where pgshift keeps a spec's state: a file beside the
// spec (backend file), or a row of a table in a PostgreSQL database
// (backend postgres), so that runs from several machines share it. DSN is
// a postgres:// URL and never holds a password (PasswordEnv names the
// variable holding it).
type StateConfig struct {
	Backend     string `yaml:"backend" json:"backend"` // file or postgres
	DSN         string `yaml:"dsn,omitempty" json:"dsn,omitempty"`
	PasswordEnv string `yaml:"password_env,omitempty" json:"password_env,omitempty"`
	Table       string `yaml:"table,omitempty" json:"table,omitempty"` // [schema.]table, default pgshift_state
}

// Default values of spec version 1 that SetDefaults fills. The JSON Schema
// (schemas/upgrade.v1.schema.json) declares the same defaults; a test keeps
// the two in step.
const (
	DefaultCopyMethod            = "subscription"
	DefaultCopyWorkers           = 4
	DefaultSplitTablesLargerThan = ByteSize(1 << 30)
	DefaultSequenceMargin        = 1000
	DefaultVerifyMode            = "checksum"
	DefaultVerifyWorkers         = 2
	DefaultApproval              = "manual"
	DefaultPauseTimeout          = Duration(10 * time.Second)
	DefaultFreeze                = "pooler"
	DefaultDDL                   = "compare"
	DefaultWatchListen           = "127.0.0.1:9188"
	DefaultWatchInterval         = Duration(15 * time.Second)
	DefaultWatchMaxRetainedWAL   = ByteSize(10 << 30)
	DefaultWatchMaxLag           = ByteSize(1 << 30)
	DefaultStateBackend          = "file"
	DefaultStateTable            = "pgshift_state"
)

// SetDefaults fills every unset field. The loader fills defaults from the
// schema before decoding, so an explicit 0 in a file stays 0; in a Spec
// built in code a zero value means "unset" and booleans are left alone
// (schema.copy, schema.roles and cutover.reverse_replication default to true
// only when loading a file).
func (s *Spec) SetDefaults() {
	if s.Version == 0 {
		s.Version = 1
	}
	if s.Tables.Include == nil {
		s.Tables.Include = []string{"*.*"}
	}
	if s.Tables.Exclude == nil {
		s.Tables.Exclude = []string{}
	}
	ic := &s.Replication.InitialCopy
	if ic.Method == "" {
		ic.Method = DefaultCopyMethod
	}
	if ic.Workers == 0 {
		ic.Workers = DefaultCopyWorkers
	}
	if ic.SplitTablesLargerThan == 0 {
		ic.SplitTablesLargerThan = DefaultSplitTablesLargerThan
	}
	if s.Replication.DDL == "" {
		s.Replication.DDL = DefaultDDL
	}
	if s.Watch.Interval == 0 {
		s.Watch.Interval = DefaultWatchInterval
	}
	cq := &s.CompareQueries
	if cq.Top == 0 {
		cq.Top = 50
	}
	if cq.Rounds == 0 {
		cq.Rounds = 5
	}
	if cq.MaxRatio == 0 {
		cq.MaxRatio = 1.5
	}
	if cq.MinDiff == 0 {
		cq.MinDiff = Duration(2 * time.Millisecond)
	}
	if cq.StatementTimeout == 0 {
		cq.StatementTimeout = Duration(30 * time.Second)
	}
	if s.Watch.MaxRetainedWAL == 0 {
		s.Watch.MaxRetainedWAL = DefaultWatchMaxRetainedWAL
	}
	if s.Watch.MaxLag == 0 {
		s.Watch.MaxLag = DefaultWatchMaxLag
	}
	if s.Replication.Options == nil {
		s.Replication.Options = map[string]string{}
	}
	if s.Sequences.Margin == 0 {
		s.Sequences.Margin = DefaultSequenceMargin
	}
	if s.Verify.Mode == "" {
		s.Verify.Mode = DefaultVerifyMode
	}
	if s.Verify.Workers == 0 {
		s.Verify.Workers = DefaultVerifyWorkers
	}
	if s.Cutover.Approval == "" {
		s.Cutover.Approval = DefaultApproval
	}
	if s.State.Backend == "" {
		s.State.Backend = DefaultStateBackend
	}
	if s.State.Table == "" {
		s.State.Table = DefaultStateTable
	}
	if s.Cutover.PauseTimeout == 0 {
		s.Cutover.PauseTimeout = DefaultPauseTimeout
	}
	if s.Cutover.Freeze == "" {
		s.Cutover.Freeze = DefaultFreeze
		if s.Cutover.Switch.PgBouncer == nil && (s.Cutover.Switch.HAProxy != nil || s.Cutover.Switch.Exec != nil) {
			s.Cutover.Freeze = "read-only" // PAUSE needs a PgBouncer
		}
	}
	s.fillNames()
}

// fillNames sets the replication object names left empty to their defaults.
func (s *Spec) fillNames() {
	if s.Replication.Publication == "" {
		s.Replication.Publication = s.defaultObjectName()
	}
	if s.Replication.Subscription == "" {
		s.Replication.Subscription = s.defaultObjectName()
	}
	if s.Replication.Slot == "" {
		s.Replication.Slot = s.defaultObjectName()
	}
}

// defaultObjectName is pgshift_<name> with '-' replaced by '_', so that it is
// a plain PostgreSQL identifier (and a valid replication slot name).
func (s *Spec) defaultObjectName() string {
	return "pgshift_" + strings.ReplaceAll(s.Name, "-", "_")
}

// PublicationName is the publication on blue.
func (s *Spec) PublicationName() string {
	if s.Replication.Publication != "" {
		return s.Replication.Publication
	}
	return s.defaultObjectName()
}

// SubscriptionName is the subscription on green.
func (s *Spec) SubscriptionName() string {
	if s.Replication.Subscription != "" {
		return s.Replication.Subscription
	}
	return s.defaultObjectName()
}

// SlotName is the replication slot on blue.
func (s *Spec) SlotName() string {
	if s.Replication.Slot != "" {
		return s.Replication.Slot
	}
	return s.defaultObjectName()
}

// ReverseName is the base name of the reverse replication objects
// (publication on green, subscription and slot for blue).
func (s *Spec) ReverseName() string {
	return s.defaultObjectName() + "_reverse"
}

// Hash is the SHA-256 (hex) of the canonical JSON of the rendered, defaulted
// spec. Saved plans and state files record it to notice a spec that moved on.
// The variable declarations and the file path are left out: only what the
// spec does counts.
func (s *Spec) Hash() string {
	c := *s
	c.Vars = nil
	c.File = ""
	c.State = StateConfig{}
	b, err := json.Marshal(&c)
	if err != nil {
		// Every field of Spec marshals; this cannot happen.
		panic("engine: marshal spec: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// StatePath is where the state lives by default: with state.backend
// postgres, the location of its row (state.dsn with pgshift's parameters
// password_env and table, and the spec's name as the fragment: the
// engine's postgres location); otherwise the file <name>.pgshift-state.json
// beside the spec file (in the working folder for a spec built in code).
func (s *Spec) StatePath() string {
	if s.State.Backend == "postgres" && s.State.DSN != "" {
		q := url.Values{}
		if s.State.PasswordEnv != "" {
			q.Set("password_env", s.State.PasswordEnv)
		}
		if s.State.Table != "" && s.State.Table != DefaultStateTable {
			q.Set("table", s.State.Table)
		}
		loc := s.State.DSN
		if len(q) > 0 {
			sep := "?"
			if strings.Contains(loc, "?") {
				sep = "&"
			}
			loc += sep + q.Encode()
		}
		return loc + "#" + url.PathEscape(s.Name)
	}
	dir := "."
	if s.File != "" {
		dir = filepath.Dir(s.File)
	}
	return filepath.Join(dir, s.Name+".pgshift-state.json")
}
