package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
	"gopkg.in/yaml.v3"
)

// TestWatchUnreachableAndStop runs watch in-process against servers that
// do not exist (a closed port: a real refused connection, no server
// needed): /healthz answers 503 naming blue, /metrics says watch is not up,
// a taken address fails at once, and cancelling the context ends the
// command cleanly with exit 0.
func TestWatchUnreachableAndStop(t *testing.T) {
	closed := freeAddr(t)
	sp := filepath.Join(t.TempDir(), "nowhere.yaml")
	os.WriteFile(sp, []byte(fmt.Sprintf(`version: 1
name: nowhere
source:
  dsn: "postgres://postgres@%[1]s/app?connect_timeout=2"
target:
  dsn: "postgres://postgres@%[1]s/green?connect_timeout=2"
watch:
  interval: 1s
cutover:
  switch:
    exec: {switch: ["true"], back: ["true"]}
`, closed)), 0o600)

	addrs := make(chan string, 1)
	watchStarted = func(addr string) { addrs <- addr }
	defer func() { watchStarted = nil }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		root := newRootCommand()
		root.SetArgs([]string{"watch", "-f", sp, "--listen", "127.0.0.1:0"})
		root.SetOut(io.Discard)
		root.SetErr(&stderr)
		done <- root.ExecuteContext(ctx)
	}()
	var addr string
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("watch ended before listening: %v\n%s", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not start listening")
	}

	code, body := waitHealthz(t, addr, func(code int, body string) bool { return strings.Contains(body, "blue") })
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "unhealthy: blue: connect to postgres://postgres@"+closed) ||
		strings.Count(strings.TrimSpace(body), "\n") != 0 {
		t.Fatalf("/healthz with blue unreachable: %d %q", code, body)
	}
	metrics := httpGet(t, "http://"+addr+"/metrics")
	for _, want := range []string{"pgshift_watch_up 0", `pgshift_watch_server_up{side="blue"} 0`, "pgshift_watch_max_lag_bytes 1.073741824e+09"} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	if strings.Contains(metrics, "pgshift_replication_lag_bytes") {
		t.Error("/metrics shows a lag it could not read")
	}

	// A second watch on the same address fails at once, naming the way out.
	out, errOut, c := runCLI(t, "", "watch", "-f", sp, "--listen", addr)
	if c != exitError || !strings.Contains(errOut, "choose another address with --listen or watch.listen") {
		t.Fatalf("watch on a taken address: exit %d\n%s%s", c, out, errOut)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch ended with %v after its context was cancelled, want a clean stop", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop within 10s of its context ending")
	}
	if !strings.Contains(stderr.String(), "watch stopped") || strings.Count(stderr.String(), "watch cannot read everything") != 1 {
		t.Fatalf("log:\n%s", stderr.String())
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("the HTTP server still listens after watch stopped")
	}
}

// TestWatchLiveWithPrometheus is the whole path on real servers: blue 13
// and green 17 replicating (apply up to the cutover gate), the built
// binary running watch, a real Prometheus scraping it every second with
// deploy/prometheus's config and rules; then every PromQL expression of
// the dashboard and of alerts.yml is evaluated through Prometheus's HTTP
// API and must return data, and SIGTERM must stop watch with exit 0.
func TestWatchLiveWithPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not found on PATH: run `make deps` (or apt-get install prometheus)")
	}
	start := time.Now()
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "app")
	green.CreateDatabase(t, "app")
	blue.Exec(t, "app", `CREATE TABLE public.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
		INSERT INTO public.orders (note) SELECT 'order ' || g FROM generate_series(1, 2000) g;
		CREATE TABLE public.customers (id int PRIMARY KEY, name text NOT NULL);
		INSERT INTO public.customers SELECT g, 'customer ' || g FROM generate_series(1, 300) g`)

	dir := t.TempDir()
	sp := filepath.Join(dir, "watched.yaml")
	os.WriteFile(sp, []byte(fmt.Sprintf(`version: 1
name: watched
source:
  dsn: %s
target:
  dsn: %s
verify:
  mode: checksum
watch:
  interval: 1s
  verify_every: 3s
  max_lag: 64KiB
cutover:
  switch:
    exec: {switch: ["true"], back: ["true"]}
`, blue.DSN("app"), green.DSN("app"))), 0o600)
	if out, stderr, code := runCLI(t, "", "apply", "-f", sp); code != exitOK || !strings.Contains(out, "Apply stopped before cutover") {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
	}
	t.Logf("servers up and replicating after %s", time.Since(start).Round(time.Millisecond))

	bin := filepath.Join(t.TempDir(), "pgshift")
	if out, err := exec.Command(pgtest.GoCommand(), "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	watchAddr := freeAddr(t)
	var watchLog syncBuffer
	wcmd := exec.Command(bin, "watch", "-f", sp, "--listen", watchAddr, "--log-level", "debug")
	wcmd.Stderr = &watchLog
	if err := wcmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- wcmd.Wait() }()
	t.Cleanup(func() {
		if wcmd.ProcessState == nil {
			wcmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("watch log:\n%s", watchLog.String())
		}
	})
	code, body := waitHealthz(t, watchAddr, func(code int, _ string) bool { return code == http.StatusOK })
	if code != http.StatusOK || !strings.HasPrefix(body, "ok: blue and green read") {
		t.Fatalf("/healthz on a healthy sync: %d %q", code, body)
	}

	promAddr := startPrometheus(t, promBin, watchAddr)

	// Samples: wait until two scrapes of watch (increase() needs two).
	waitFor(t, 30*time.Second, "two scrapes of watch in Prometheus", func() bool {
		res, err := promQuery(promAddr, "count_over_time(pgshift_watch_up[1m])")
		return err == nil && len(res) > 0 && res[0].Value[1] != "1"
	})

	exprs := dashboardExprs(t)
	alerts := alertExprs(t)
	if len(exprs) < 10 || len(alerts) < 8 {
		t.Fatalf("found %d dashboard and %d alert expressions: the files moved?", len(exprs), len(alerts))
	}
	for _, e := range append(exprs, alerts...) {
		res, err := promQuery(promAddr, e)
		if err != nil {
			t.Errorf("%s: %v", e, err)
			continue
		}
		if len(res) == 0 {
			t.Errorf("%s: no data", e)
		}
	}

	t.Logf("evaluated %d dashboard and %d alert expressions through Prometheus", len(exprs), len(alerts))

	// The values the dashboard shows, on a sync that is ready.
	for q, want := range map[string]string{
		"pgshift_ready_for_cutover":                          "1",
		"pgshift_watch_up":                                   "1",
		`pgshift_slot_wal_status{status="reserved"}`:         "1",
		`sum(pgshift_table_sync_state{state="r"})`:           "2",
		"pgshift_schema_drift_items":                         "0",
		`pgshift_step_status{step="verify",status="done"}`:   "1",
		`pgshift_subscription_apply_errors_total`:            "0",
		`count(pgshift_slot_lag_bytes{stage="confirmed"})`:   "1",
		`pgshift_watch_verify_runs_total{result="passed"}>0`: "",
	} {
		res, err := promQuery(promAddr, q)
		switch {
		case err != nil:
			t.Errorf("%s: %v", q, err)
		case len(res) != 1:
			t.Errorf("%s: %d series, want 1", q, len(res))
		case want != "" && res[0].Value[1] != want:
			t.Errorf("%s = %v, want %s", q, res[0].Value[1], want)
		}
	}

	// Prometheus evaluated every rule of both files without error.
	checkRulesHealthy(t, promAddr)

	// A real crossing: green stops applying while blue writes, so the lag
	// passes watch.max_lag (64 KiB here). One warning naming the fix,
	// /healthz failing with the reason, then one info once green is back.
	green.Exec(t, "app", "ALTER SUBSCRIPTION pgshift_watched DISABLE")
	blue.Exec(t, "app", "INSERT INTO public.orders (note) SELECT repeat('x', 200) FROM generate_series(1, 5000)")
	code, body = waitHealthz(t, watchAddr, func(code int, body string) bool { return strings.Contains(body, "max_lag") })
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "unhealthy: lag ") || !strings.HasSuffix(body, " over watch.max_lag 64.0 KiB\n") {
		t.Fatalf("/healthz with green stopped: %d %q", code, body)
	}
	time.Sleep(2500 * time.Millisecond) // more collections over the threshold: no more warnings
	green.Exec(t, "app", "ALTER SUBSCRIPTION pgshift_watched ENABLE")
	if code, body := waitHealthz(t, watchAddr, func(code int, _ string) bool { return code == http.StatusOK }); code != http.StatusOK {
		t.Fatalf("/healthz after green caught up: %d %q", code, body)
	}
	logged := watchLog.String()
	// (A verify due while the subscription is disabled warns too, rightly:
	// only the lag's warnings are counted.)
	if n := strings.Count(logged, "is over watch.max_lag 64.0 KiB"); n != 1 || !strings.Contains(logged, "pgshift status -f "+sp) ||
		strings.Count(logged, "replication lag back under watch.max_lag") != 1 {
		t.Fatalf("want one lag warning naming the fix and one recovery, got %d warnings:\n%s", n, logged)
	}

	if err := wcmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("watch after SIGTERM: %v (want exit 0)\n%s", err, watchLog.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("watch did not stop within 15s of SIGTERM")
	}
	for _, want := range []string{"watch stopped", "verify passed"} {
		if !strings.Contains(watchLog.String(), want) {
			t.Errorf("watch log lacks %q", want)
		}
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// startPrometheus runs Prometheus on a free port with deploy/prometheus's
// config (its rules included), the watch job pointed at watchAddr and
// scraped every second, storage in a temporary folder; it is stopped in
// cleanup. It returns Prometheus's address once it is ready.
func startPrometheus(t *testing.T, bin, watchAddr string) string {
	t.Helper()
	deploy, err := filepath.Abs(filepath.Join("..", "..", "deploy", "prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(deploy, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["global"] = map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"}
	var rules []any
	for _, f := range cfg["rule_files"].([]any) {
		rules = append(rules, filepath.Join(deploy, f.(string)))
	}
	cfg["rule_files"] = rules
	var jobs []any
	for _, j := range cfg["scrape_configs"].([]any) {
		job := j.(map[string]any)
		if job["job_name"] != "pgshift-watch" {
			continue // apply's job: nothing runs there in this test
		}
		job["scrape_interval"] = "1s"
		job["static_configs"] = []any{map[string]any{"targets": []any{watchAddr}}}
		jobs = append(jobs, job)
	}
	if len(jobs) != 1 {
		t.Fatal("deploy/prometheus/prometheus.yml has no pgshift-watch job")
	}
	cfg["scrape_configs"] = jobs
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfgPath, out, 0o644)

	addr := freeAddr(t)
	var log bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	waitFor(t, 30*time.Second, "prometheus ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("prometheus exited:\n%s", log.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return addr
}

// dashboardExprs is every targets[].expr of every panel of the dashboard
// (rows' nested panels included).
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "pgshift-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, r := range ps {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatal(err)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Fatal("a dashboard target without expr")
				}
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return exprs
}

// alertExprs is every rule's expression of alerts.yml, each comparison
// turned into its bool form. An alert's expression filters series by a
// threshold, so on a healthy system it is rightly empty; with `bool` the
// same expression (its metrics, label matching and threshold series)
// returns every series with 0 or 1 instead, which proves the series exist
// and match without waiting for something to go wrong. alerts.yml keeps
// its comparisons outside aggregations so that the rewrite does not change
// which series an aggregation sees.
func alertExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, boolComparisons(r.Expr))
		}
	}
	return exprs
}

// boolComparisons adds `bool` after every comparison operator outside label
// matchers, range selectors and strings.
func boolComparisons(expr string) string {
	var b strings.Builder
	depth := 0 // inside {} or []
	var quote byte
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote != 0:
			if c == '\\' && i+1 < len(expr) {
				b.WriteByte(c)
				i++
				c = expr[i]
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		case depth == 0 && strings.ContainsRune("=!<>", rune(c)):
			op := string(c)
			if i+1 < len(expr) && expr[i+1] == '=' {
				op += "="
			}
			if op == "=" || op == "!" {
				break // not a comparison
			}
			b.WriteString(op + " bool")
			i += len(op) - 1
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func TestBoolComparisons(t *testing.T) {
	for in, want := range map[string]string{
		`up{job="pgshift-watch"} == 0 or pgshift_watch_up == 0`: `up{job="pgshift-watch"} == bool 0 or pgshift_watch_up == bool 0`,
		`a > on(job) group_left b`:                              `a > bool on(job) group_left b`,
		`x{status=~"a|b", s!="c"} >= 1`:                         `x{status=~"a|b", s!="c"} >= bool 1`,
		`increase(y[15m]) != 0`:                                 `increase(y[15m]) != bool 0`,
	} {
		if got := boolComparisons(in); got != want {
			t.Errorf("boolComparisons(%q) = %q, want %q", in, got, want)
		}
	}
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// promQuery evaluates an instant query; a Prometheus error is an error.
func promQuery(addr, q string) ([]promSample, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s, want vector", r.Data.ResultType)
	}
	for i := range r.Data.Result {
		if s, ok := r.Data.Result[i].Value[1].(string); ok {
			r.Data.Result[i].Value[1] = s
		}
	}
	return r.Data.Result, nil
}

// checkRulesHealthy waits until Prometheus has evaluated every rule, then
// requires each to be healthy (its expression ran without error).
func checkRulesHealthy(t *testing.T, addr string) {
	t.Helper()
	type rule struct {
		Name      string `json:"name"`
		Health    string `json:"health"`
		LastError string `json:"lastError"`
	}
	var rules []rule
	waitFor(t, 20*time.Second, "every rule evaluated", func() bool {
		body := httpGet(t, "http://"+addr+"/api/v1/rules")
		var r struct {
			Data struct {
				Groups []struct {
					Rules []rule `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		rules = rules[:0]
		for _, g := range r.Data.Groups {
			rules = append(rules, g.Rules...)
		}
		for _, r := range rules {
			if r.Health == "unknown" {
				return false
			}
		}
		return len(rules) > 0
	})
	for _, r := range rules {
		if r.Health != "ok" {
			t.Errorf("rule %s: %s %s", r.Name, r.Health, r.LastError)
		}
	}
}

// waitHealthz polls /healthz until done says so (or 20 s pass) and returns
// the last answer.
func waitHealthz(t *testing.T, addr string, done func(code int, body string) bool) (int, string) {
	t.Helper()
	var code int
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, body = resp.StatusCode, string(b)
			if done(code, body) {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return code, body
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// syncBuffer is a buffer a child's output is copied into while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freeAddr is a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
