package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// testCA is a certificate authority the test makes, and what it signed.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serverCert signs a certificate valid for the DNS names given only.
func (ca *testCA) serverCert(t *testing.T, dns ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: dns[0]}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// enableTLS installs a server certificate in the cluster's data folder
// (owned by the server's user, as PostgreSQL demands of the key), turns ssl
// on with a reload, and makes role tls_admin connect over TLS only.
func enableTLS(t *testing.T, c *pgtest.Cluster, certPEM, keyPEM []byte) {
	t.Helper()
	fi, err := os.Stat(c.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	for name, data := range map[string][]byte{"server.crt": certPEM, "server.key": keyPEM} {
		p := filepath.Join(c.DataDir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, int(st.Uid), int(st.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	hba := filepath.Join(c.DataDir, "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	lines := "hostssl all tls_admin 127.0.0.1/32 trust\nhostnossl all tls_admin 127.0.0.1/32 reject\n"
	if err := os.WriteFile(hba, append([]byte(lines), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(hba, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE ROLE tls_admin LOGIN SUPERUSER", "ALTER SYSTEM SET ssl = on",
		"ALTER SYSTEM SET ssl_cert_file = 'server.crt'", "ALTER SYSTEM SET ssl_key_file = 'server.key'"} {
		c.Exec(t, "postgres", q)
	}
	c.Exec(t, "postgres", "SELECT pg_reload_conf()")
}

// sharedDir is a folder the servers' user may read: green's subscription
// reads the CA file named in its connection string.
func sharedDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pgshift-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestTLSVerifyFull runs the upgrade with sslmode=verify-full everywhere:
// pgshift to blue and green, green's subscription to blue and the reverse
// one to green, with a CA and certificates the test makes. A wrong CA and
// a host name the certificate does not name are refused with a clear
// error before anything changes.
func TestTLSVerifyFull(t *testing.T) {
	integration(t)
	t.Parallel()
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	ca := newTestCA(t, "pgshift test CA")
	for _, c := range cs {
		cert, key := ca.serverCert(t, "localhost")
		enableTLS(t, c, cert, key)
		c.CreateDatabase(t, "app")
		c.Exec(t, "app", `CREATE TABLE public.orders (id bigserial PRIMARY KEY, note text)`)
	}
	blue.Exec(t, "app", `INSERT INTO public.orders (note) SELECT 'order ' || g FROM generate_series(1, 500) g`)
	shared := sharedDir(t)
	caFile := filepath.Join(shared, "ca.crt")
	otherCA := filepath.Join(shared, "other-ca.crt")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherCA, newTestCA(t, "another CA").pem, 0o644); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	write := func(name, host, rootCert string) string {
		dsn := func(c *pgtest.Cluster) string {
			return fmt.Sprintf("postgres://tls_admin@%s:%d/app?sslmode=verify-full&sslrootcert=%s", host, c.Port, rootCert)
		}
		p := filepath.Join(dir, name+".yaml")
		spec := fmt.Sprintf(`version: 1
name: %s
source:
  dsn: %q
target:
  dsn: %q
schema:
  copy: false
cutover:
  freeze: read-only
  reverse_replication: true
  switch:
    exec: {switch: ["true"], back: ["true"]}
`, name, dsn(blue), dsn(green))
		if err := os.WriteFile(p, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	wrongCA := write("wrong-ca", "localhost", otherCA)
	r := pgshift(t, dir, "plan", "-f", wrongCA)
	if r.code == 0 || !strings.Contains(r.stderr, "certificate") || !strings.Contains(r.stderr, "sslrootcert") {
		t.Fatalf("plan with a CA that did not sign the servers' certificates: want a refusal naming the certificate and sslrootcert\n%s", r)
	}
	t.Logf("wrong CA: %s", r.stderr)
	wrongHost := write("wrong-host", "127.0.0.1", caFile)
	r = pgshift(t, dir, "plan", "-f", wrongHost)
	if r.code == 0 || !strings.Contains(r.stderr, "127.0.0.1") || !strings.Contains(r.stderr, "localhost") {
		t.Fatalf("plan with a host name the certificate does not name: want a refusal naming both\n%s", r)
	}
	t.Logf("wrong host: %s", r.stderr)

	good := write("tls", "localhost", caFile)
	r = pgshift(t, dir, "apply", "-f", good, "--approve-cutover")
	if r.code != 0 || !strings.Contains(r.stdout, "Apply complete") {
		t.Fatalf("apply with verify-full:\n%s", r)
	}
	// Both subscriptions connect with verify-full, and their walsenders run
	// over TLS.
	for _, side := range []struct {
		sub, pub *pgtest.Cluster
		name     string
	}{{green, blue, "pgshift_tls"}, {blue, green, "pgshift_tls_reverse"}} {
		ci := side.sub.Scalar(t, "app", fmt.Sprintf(`SELECT subconninfo FROM pg_subscription WHERE subname = '%s'`, side.name))
		if !strings.Contains(ci, "sslmode=verify-full") || !strings.Contains(ci, "sslrootcert=") {
			t.Errorf("subscription %s connects with %q, want verify-full with the CA", side.name, ci)
		}
	}
	waitFor(t, 30*time.Second, "the reverse subscription's walsender on green", func() bool {
		return green.Scalar(t, "postgres", `SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.backend_type = 'walsender' AND s.ssl`) != "0"
	})
	compareAll(t, blue.DSN("app"), green.DSN("app"))
}
