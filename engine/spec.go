package engine

import "time"

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

	// File is the path the spec was read from ("" when built in code); the
	// default state file lives beside it.
	File string `yaml:"-" json:"-"`
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

// Duration is a time.Duration written as "10s" in YAML and JSON.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// ByteSize is a size in bytes written as "1GiB" in YAML and JSON.
type ByteSize int64
