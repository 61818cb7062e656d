package snapcopy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// slotNameRE is PostgreSQL's own rule for replication slot names; a name that
// passes it is safe inside a replication command, which takes no parameters.
var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// snapshotNameRE matches the names pg_export_snapshot and
// CREATE_REPLICATION_SLOT hand out (for example 00000003-0000001B-1).
var snapshotNameRE = regexp.MustCompile(`^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?$`)

// ValidSlotName reports why name cannot be a replication slot name, or nil.
func ValidSlotName(name string) error {
	if !slotNameRE.MatchString(name) {
		return fmt.Errorf("slot name %q: use 1 to 63 lower-case letters, digits and underscores", name)
	}
	return nil
}

// Snapshot is a logical replication slot on blue together with the snapshot
// it exported. The snapshot stays importable only while this value is open:
// keep it until every copy worker has finished, then Close it.
type Snapshot struct {
	Slot          string
	Name          string         // the exported snapshot, for SET TRANSACTION SNAPSHOT
	ConsistentLSN pglogrepl.LSN  // streaming from the slot starts after this point
	conn          *pgconn.PgConn // the replication connection holding the snapshot
}

// ExportSnapshot creates the logical slot (output plugin pgoutput) on blue
// over a replication connection and exports its snapshot. cfg is blue's
// connection configuration; it is copied, not changed. The legacy
// EXPORT_SNAPSHOT keyword is used because every supported major (13 and
// later) accepts it, while the (SNAPSHOT 'export') form needs 15 or later.
func ExportSnapshot(ctx context.Context, cfg *pgx.ConnConfig, slot string) (*Snapshot, error) {
	if err := ValidSlotName(slot); err != nil {
		return nil, err
	}
	rc := cfg.Config.Copy()
	if rc.RuntimeParams == nil {
		rc.RuntimeParams = map[string]string{}
	}
	rc.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, rc)
	if err != nil {
		return nil, fmt.Errorf("blue: open a replication connection for slot %q: %w (the user needs the REPLICATION attribute and a pg_hba.conf entry allowing it)", slot, err)
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Mode:           pglogrepl.LogicalReplication,
		SnapshotAction: "EXPORT_SNAPSHOT",
	})
	if err != nil {
		conn.Close(context.Background())
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" {
			return nil, fmt.Errorf("blue: slot %q already exists, and a slot's exported snapshot lives only as long as the connection that created it: if an interrupted copy of pgshift's made it, empty green's tables and drop it (Reset) before copying again; if pgshift did not create it, drop it yourself or use another slot name: %w", slot, err)
		}
		return nil, fmt.Errorf("blue: create logical slot %q with an exported snapshot: %w", slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("blue: slot %q: consistent point %q: %w", slot, res.ConsistentPoint, err)
	}
	if !snapshotNameRE.MatchString(res.SnapshotName) {
		conn.Close(context.Background())
		return nil, fmt.Errorf("blue: slot %q: unexpected snapshot name %q", slot, res.SnapshotName)
	}
	return &Snapshot{Slot: slot, Name: res.SnapshotName, ConsistentLSN: lsn, conn: conn}, nil
}

// Alive reports whether the connection holding the snapshot is still open,
// without sending anything on it (an exported snapshot needs it idle).
func (s *Snapshot) Alive() bool {
	return s != nil && s.conn != nil && !s.conn.IsClosed()
}

// Close ends the replication connection: the snapshot can no longer be
// imported; the slot stays on blue and keeps its position.
func (s *Snapshot) Close(ctx context.Context) error {
	if s == nil || s.conn == nil {
		return nil
	}
	err := s.conn.Close(ctx)
	s.conn = nil
	return err
}

// quoteLiteral quotes s as an SQL string literal for commands that take no
// parameters (SET TRANSACTION SNAPSHOT). Callers validate s first; a
// backslash is refused so that the quoting holds whatever
// standard_conforming_strings says.
func quoteLiteral(s string) (string, error) {
	if strings.ContainsRune(s, '\\') || strings.ContainsRune(s, 0) {
		return "", fmt.Errorf("refusing to quote %q", s)
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'", nil
}
