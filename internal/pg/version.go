package pg

import (
	"context"
	"fmt"
)

// ServerVersion is a server's version as server_version_num (130023) and
// its major version (13).
type ServerVersion struct {
	Num   int
	Major int
}

func (v ServerVersion) String() string {
	if v.Major >= 10 {
		return fmt.Sprintf("%d.%d", v.Major, v.Num%10000)
	}
	return fmt.Sprintf("%d.%d.%d", v.Num/10000, v.Num/100%100, v.Num%100)
}

// ServerVersionOf reads the server's version.
func ServerVersionOf(ctx context.Context, db Querier) (ServerVersion, error) {
	num, err := Scalar[int](ctx, db, "SELECT current_setting('server_version_num')::int")
	if err != nil {
		return ServerVersion{}, fmt.Errorf("read server version: %w", err)
	}
	return VersionFromNum(num), nil
}

func VersionFromNum(num int) ServerVersion {
	// Before 10 the major had two parts (9.6); those servers are refused
	// anyway (no logical replication), so 9 is enough to compare.
	return ServerVersion{Num: num, Major: num / 10000}
}

// ServerMajor reads the major version (13, 17, ...) of a server.
func ServerMajor(ctx context.Context, db Querier) (int, error) {
	v, err := ServerVersionOf(ctx, db)
	return v.Major, err
}
