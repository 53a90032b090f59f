package e2e

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHTTPClient drives test/targets/httpclient (Go 1.26 and 1.19, plain and
// stripped) and checks every outgoing call's series, exactly.
func TestHTTPClient(t *testing.T) {
	requireBPF(t)
	httpVariants, _ := buildClientTargets(t)
	a := startAgent(t, "")
	type run struct {
		v     clientVariant
		p     *lineProc
		ports map[string]string // upstream name → port
	}
	var runs []*run
	for _, v := range httpVariants {
		p := startLineProc(t, v.exe, fmt.Sprintf("e2e-httpc-%s-%d", v.name, serviceSeq.Add(1)))
		line := p.waitLine(t, "upstreams ", 10*time.Second)
		r := &run{v: v, p: p, ports: map[string]string{}}
		for _, f := range strings.Fields(line)[1:] {
			name, addr, _ := strings.Cut(f, "=")
			_, port, _ := net.SplitHostPort(addr)
			r.ports[name] = port
		}
		runs = append(runs, r)
	}
	for _, r := range runs {
		ts := a.waitTargeted(t, r.p.pid, 15*time.Second)
		checkFamily(t, ts, "http_client")
		r.p.send(t, "run")
	}
	for _, r := range runs {
		r.p.waitLine(t, "run done", 30*time.Second)
	}
	for _, r := range runs {
		t.Run(r.v.name, func(t *testing.T) {
			pa, pb, slow, closed := r.ports["a"], r.ports["b"], r.ports["slow"], r.ports["closed"]
			// The upstreams answer HTTP/1.1; a request without a response
			// has no network_protocol_version.
			k := func(method, status, port, errType string) string {
				version := "1.1"
				if status == "" {
					version = ""
				}
				return strings.Join([]string{method, status, "127.0.0.1", port, errType, version}, "|")
			}
			want := map[string]uint64{
				k("GET", "200", pa, ""):                    3,
				k("GET", "404", pa, ""):                    2,
				k("POST", "503", pa, ""):                   2,
				k("_OTHER", "200", pa, ""):                 1,
				k("GET", "200", pb, ""):                    2,
				k("DELETE", "204", pb, ""):                 1,
				k("GET", "", closed, "connection_refused"): 2,
				k("GET", "", slow, "timeout"):              2,
				k("GET", "", slow, "context_canceled"):     1,
			}
			var got map[string]uint64
			waitFor(5*time.Second, func() bool {
				s, err := a.scrape()
				if err != nil {
					return false
				}
				got = s.histCounts("http_client_request_duration_seconds", r.p.service,
					"http_request_method", "http_response_status_code", "server_address", "server_port", "error_type", "network_protocol_version")
				return diffCounts(got, want) == ""
			})
			if d := diffCounts(got, want); d != "" {
				t.Errorf("http_client_request_duration_seconds counts differ:\n%s", d)
			}
		})
	}
}

// checkFamily fails unless family attached to the target without error.
func checkFamily(t *testing.T, ts targetStatus, family string) {
	t.Helper()
	for _, p := range ts.Probes {
		if p.Family == family {
			if p.Error != "" {
				t.Fatalf("pid %d: %s probes failed: %s", ts.PID, family, p.Error)
			}
			return
		}
	}
	t.Fatalf("pid %d: family %s not attached: %+v", ts.PID, family, ts.Probes)
}

// dbMix is what test/targets/dbclient's "mix" runs on one database:
// operation|collection|error_type → count.
func dbMix(errType string) map[string]uint64 {
	return map[string]uint64{
		"CREATE|items|":                   1,
		"DROP|items|":                     1,
		"INSERT|items|":                   7,
		"SELECT|items|":                   11,
		"SELECT||":                        1,
		"UPDATE|items|":                   3,
		"DELETE|items|":                   1,
		"BEGIN||":                         3,
		"COMMIT||":                        2,
		"ROLLBACK||":                      1,
		"SELECT|missing_table|" + errType: 1,
		"INSERT|missing_table|" + errType: 1,
	}
}

// TestDBClient drives test/targets/dbclient against SQLite and a real
// PostgreSQL (Go 1.26 and 1.19, plain and stripped): exact operation counts
// per label set, then a saturated pool of two connections.
func TestDBClient(t *testing.T) {
	requireBPF(t)
	pg := startPostgres(t)
	_, dbVariants := buildClientTargets(t)
	a := startAgent(t, "db:\n  pool_names:\n    postgresql-2: orders\n")
	type run struct {
		v      clientVariant
		p      *lineProc
		dbName string
	}
	var runs []*run
	for i, v := range dbVariants {
		name := fmt.Sprintf("e2e%d", i)
		dsn := pg.createDB(t, name)
		p := startLineProc(t, v.exe, fmt.Sprintf("e2e-db-%s-%d", v.name, serviceSeq.Add(1)), "-dir", t.TempDir(), "-pg", dsn)
		p.waitLine(t, "ready", 15*time.Second)
		runs = append(runs, &run{v: v, p: p, dbName: name})
	}
	for _, r := range runs {
		ts := a.waitTargeted(t, r.p.pid, 15*time.Second)
		checkFamily(t, ts, "db")
		r.p.send(t, "mix")
	}
	for _, r := range runs {
		r.p.waitLine(t, "mix done", 30*time.Second)
	}
	labels := []string{"db_system_name", "db_operation_name", "db_collection_name", "error_type"}
	want := map[string]uint64{}
	for k, n := range dbMix("*sqlite.Error") {
		want["sqlite|"+k] = n
	}
	for k, n := range dbMix("*pq.Error") {
		want["postgresql|"+k] = n
	}
	for _, r := range runs {
		t.Run("mix/"+r.v.name, func(t *testing.T) {
			var got map[string]uint64
			waitFor(5*time.Second, func() bool {
				s, err := a.scrape()
				if err != nil {
					return false
				}
				got = s.histCounts("db_client_operation_duration_seconds", r.p.service, labels...)
				return diffCounts(got, want) == ""
			})
			if d := diffCounts(got, want); d != "" {
				t.Errorf("db_client_operation_duration_seconds counts differ:\n%s", d)
			}
			// The PostgreSQL pool's server and database, from the DSN
			// lib/pq was given (a URL naming all three); SQLite has none.
			var ops uint64
			for _, n := range dbMix("") {
				ops += n
			}
			server := map[string]uint64{"sqlite|||": ops, "postgresql|127.0.0.1|" + pg.port + "|" + r.dbName: ops}
			s, err := a.scrape()
			if err != nil {
				t.Fatal(err)
			}
			if d := diffCounts(s.histCounts("db_client_operation_duration_seconds", r.p.service, "db_system_name", "server_address", "server_port", "db_namespace"), server); d != "" {
				t.Errorf("db_client_operation_duration_seconds by server and namespace:\n%s", d)
			}
		})
	}

	// Saturation: every target at once; each pool must be seen with 2
	// connections used and requests pending while its queries run.
	for _, r := range runs {
		r.p.send(t, "saturate")
	}
	seen := map[string]bool{}
	var mu sync.Mutex
	for _, r := range runs {
		r.p.waitLine(t, "saturating", 15*time.Second)
	}
	waitFor(8*time.Second, func() bool {
		s, err := a.scrape()
		if err != nil {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range runs {
			pool := map[string]string{"service_name": r.p.service, "db_client_connection_pool_name": "orders"}
			used, _ := s.value("db_client_connection_count", with(pool, "db_client_connection_state", "used"))
			pending, _ := s.value("db_client_connection_pending_requests", pool)
			if used == 2 && pending > 0 {
				seen[r.p.service] = true
			}
		}
		return len(seen) == len(runs)
	})
	for _, r := range runs {
		t.Run("saturation/"+r.v.name, func(t *testing.T) {
			if !seen[r.p.service] {
				t.Errorf("pool never seen saturated (used=2, pending>0)")
			}
			line := r.p.waitLine(t, "saturated waits=", 30*time.Second)
			waits, _ := strconv.ParseUint(strings.TrimPrefix(line, "saturated waits="), 10, 64)
			if waits == 0 {
				t.Fatalf("the target's pool recorded no wait: %s", line)
			}
			pool := map[string]string{"service_name": r.p.service, "db_client_connection_pool_name": "orders"}
			ok := waitFor(5*time.Second, func() bool {
				s, err := a.scrape()
				if err != nil {
					return false
				}
				w := s.histCounts("db_client_connection_wait_time_seconds", r.p.service, "db_client_connection_pool_name")
				used, _ := s.value("db_client_connection_count", with(pool, "db_client_connection_state", "used"))
				idle, _ := s.value("db_client_connection_count", with(pool, "db_client_connection_state", "idle"))
				pending, okp := s.value("db_client_connection_pending_requests", pool)
				max, _ := s.value("db_client_connection_max", pool)
				ops := s.histCounts("db_client_operation_duration_seconds", r.p.service, labels...)
				if w["orders"] != waits || used != 0 || idle != 2 || !okp || pending != 0 || max != 2 ||
					ops["postgresql|SELECT||"] != 12 {
					t.Logf("waits %v (want %d) used %v idle %v pending %v max %v selects %d",
						w, waits, used, idle, pending, max, ops["postgresql|SELECT||"])
					return false
				}
				return true
			})
			if !ok {
				t.Errorf("pool metrics after saturation are wrong (see log)")
			}
		})
	}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}
