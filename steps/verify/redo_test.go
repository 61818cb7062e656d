package verify

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestRunRedoBounded: a server that keeps cutting the comparison (it
// crashes on it, or keeps restarting) does not have verify start over
// forever, even when Ride says to wait each time.
func TestRunRedoBounded(t *testing.T) {
	refused := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	connect := func(ctx context.Context) (*pgx.Conn, error) { return nil, refused }
	rides := 0
	_, err := Run(context.Background(), connect, connect, []Table{{Schema: "public", Name: "t"}}, Options{
		Ride: func(ctx context.Context, err error) error {
			if err != nil {
				rides++
			}
			return nil
		},
	})
	if err == nil || !errors.Is(err, refused) || !strings.Contains(err.Error(), "cut short by a lost connection 11 times, giving up") {
		t.Fatalf("Run with a server that never answers: %v; want it to give up naming the count and the cause", err)
	}
	if rides != maxRedos+1 {
		t.Errorf("Ride called %d times, want %d", rides, maxRedos+1)
	}
}
