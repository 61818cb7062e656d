package switcher

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A runtime API that cannot be reached at all leaves traffic where it was:
// Switch says so with ErrNotSwitched, so that an abort does not need a
// switch back. A socket that answers but refuses a later command is not
// that case.
func TestHAProxySwitchUnreachableIsNotSwitched(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gone := filepath.Join(t.TempDir(), "admin.sock")
	h := &haProxy{addr: gone, backend: "pg", blue: "blue", green: "green"}
	err := h.Switch(ctx, Green)
	if !errors.Is(err, ErrNotSwitched) || !strings.Contains(err.Error(), "cutover.switch.haproxy.socket") {
		t.Fatalf("switch with the socket gone: %v, want ErrNotSwitched naming the setting", err)
	}

	// A socket that takes the first command and answers an error: the
	// command reached HAProxy, so this is not ErrNotSwitched.
	sock := filepath.Join(t.TempDir(), "answers.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 256)
			_, _ = c.Read(buf)
			_, _ = c.Write([]byte("No such server.\n"))
			c.Close()
		}
	}()
	h.addr = sock
	err = h.Switch(ctx, Green)
	if err == nil || errors.Is(err, ErrNotSwitched) {
		t.Fatalf("switch refused by HAProxy: %v, want an error that is not ErrNotSwitched", err)
	}
}
