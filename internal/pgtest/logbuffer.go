package pgtest

import (
	"bytes"
	"sync"
)

// LogBuffer collects what a run logs, from any goroutine, so that a test
// can check what it printed and what it never prints (secrets).
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
