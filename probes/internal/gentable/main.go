// Command gentable builds a small program with every Go toolchain this
// project tests against, reads from its DWARF the offsets of the struct
// fields the probe families read (each family's Structs, collected in
// structs.go) and writes them as the offset table of package symbols
// (symbols/offsets_table.go). It lives beside the families, not in
// symbols, so that symbols knows none of its callers.
//
// Regenerate the table, as root (the toolchains are unpacked into
// /var/cache/blindspot, or $BLINDSPOT_CACHE), from the repository root:
//
//	go generate ./probes/
//
// which runs "go run ./internal/gentable -out ../symbols/offsets_table.go"
// in probes/. The toolchains, one per row of the table:
//
//   - Go 1.19, 1.21, 1.22, 1.23, 1.24: Debian's builds, from
//     test/toolchains/fetch.sh go 1.NN (bookworm's golang-1.19-go,
//     bookworm-backports and trixie unpacked with a private apt
//     configuration);
//   - Go 1.26: the installed /usr/local/go/bin/go with GOTOOLCHAIN=local;
//   - Go 1.27: the same go command with GOTOOLCHAIN=go1.27.3, which fetches
//     that release through the module proxy.
//
// Every toolchain must build, and report the release it stands for;
// otherwise nothing is written, so a machine missing a toolchain cannot
// silently drop a row. -skip-missing writes the rows it could build.
// Go 1.20 and 1.25 have no toolchain here: their rows are absent, and the
// table answers for them only where both neighbouring rows agree (see
// tableStructFields in package symbols). Agreement of neighbours is not
// proof: runtime.g's atomicstatus and goid sit at 144 and 152 in Go 1.19,
// 1.21, 1.22 and 1.26 but at 152 and 160 in 1.23 and 1.24 (1.23 added
// g.syscallbp; by 1.26 the embedded runtime.gobuf had shrunk by 8 bytes), so
// before these rows existed 1.23 and 1.24 were answered wrong.
//
// The program is read with debug/dwarf directly, not through
// symbols.StructFields, which cross-checks DWARF against this very table.
package main

import (
	"bytes"
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/blindspot-dev/blindspot/symbols"
)

// toolchain is one Go release the table has a row for.
type toolchain struct {
	minor int      // the Go 1.x release it must report
	fetch bool     // gobin comes from test/toolchains/fetch.sh go 1.<minor>
	gobin string   // else: this go command
	env   []string // extra environment, e.g. GOTOOLCHAIN
}

var toolchains = []toolchain{
	{minor: 19, fetch: true},
	{minor: 21, fetch: true},
	{minor: 22, fetch: true},
	{minor: 23, fetch: true},
	{minor: 24, fetch: true},
	{minor: 26, gobin: "/usr/local/go/bin/go", env: []string{"GOTOOLCHAIN=local"}},
	{minor: 27, gobin: "/usr/local/go/bin/go", env: []string{"GOTOOLCHAIN=go1.27.3"}},
}

const program = `package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime"
)

func main() {
	var db *sql.DB
	u, _ := url.Parse("http://x/y")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, r.Method, r.URL, r.Host)
	})
	if len(os.Args) > 5 {
		_ = http.ListenAndServe(os.Args[1], nil)
		// HTTP/2 over TLS: its server types are linked in.
		srv := &http.Server{Addr: os.Args[1]}
		_ = srv.ListenAndServeTLS(os.Args[2], os.Args[3])
		db, _ = sql.Open(os.Args[2], os.Args[3])
		_ = db.Ping()
		st, _ := db.Prepare(os.Args[4])
		_, _ = st.Exec()
		tx, _ := db.Begin()
		_ = tx.Commit()
		resp, _ := http.Get(os.Args[4])
		fmt.Println(resp)
	}
	fmt.Println(db, u, runtime.NumGoroutine())
}
`

func main() {
	out := flag.String("out", "offsets_table.go", "file to write")
	skipMissing := flag.Bool("skip-missing", false, "write the rows of the toolchains that built instead of failing")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("gentable: ")

	dir, err := os.MkdirTemp("", "gentable")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module gentable\n\ngo 1.19\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(program), 0o644); err != nil {
		log.Fatal(err)
	}

	type entry struct {
		major, minor int
		structs      map[string]map[string]uint64
	}
	byVersion := map[[2]int]entry{}
	for i, tc := range toolchains {
		exe := filepath.Join(dir, fmt.Sprintf("prog%d", i))
		err := resolve(&tc)
		if err == nil {
			err = build(tc, dir, exe)
		}
		if err != nil {
			if *skipMissing {
				log.Printf("skip go1.%d: %v", tc.minor, err)
				continue
			}
			log.Fatalf("go1.%d: %v (-skip-missing writes the other rows)", tc.minor, err)
		}
		e, err := read(exe)
		if err != nil {
			log.Fatalf("go1.%d %s %v: %v", tc.minor, tc.gobin, tc.env, err)
		}
		if e.major != 1 || e.minor != tc.minor {
			log.Fatalf("%s %v built go%d.%d, want go1.%d", tc.gobin, tc.env, e.major, e.minor, tc.minor)
		}
		byVersion[[2]int{e.major, e.minor}] = entry{e.major, e.minor, e.structs}
		log.Printf("go%d.%d (%s): %d structs", e.major, e.minor, tc.gobin, len(e.structs))
	}
	if len(byVersion) == 0 {
		log.Fatal("no toolchain found")
	}
	var keys [][2]int
	for k := range byVersion {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
	})

	var b bytes.Buffer
	b.WriteString("// Code generated by internal/gentable; DO NOT EDIT.\n\npackage symbols\n\n")
	b.WriteString("// offsetTable holds struct field offsets per Go release, read from DWARF.\n")
	b.WriteString("var offsetTable = []versionOffsets{\n")
	for _, k := range keys {
		e := byVersion[k]
		fmt.Fprintf(&b, "{Major: %d, Minor: %d, Structs: map[string]map[string]uint64{\n", e.major, e.minor)
		var types []string
		for t := range e.structs {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			fmt.Fprintf(&b, "%q: {", t)
			var fields []string
			for f := range e.structs[t] {
				fields = append(fields, f)
			}
			sort.Strings(fields)
			for _, f := range fields {
				fmt.Fprintf(&b, "%q: %d, ", f, e.structs[t][f])
			}
			b.WriteString("},\n")
		}
		b.WriteString("}},\n")
	}
	b.WriteString("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		log.Fatalf("format: %v", err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
}

// resolve sets tc.gobin of a toolchain that fetch.sh provides.
func resolve(tc *toolchain) error {
	if !tc.fetch {
		return nil
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	script := filepath.Join(root, "test", "toolchains", "fetch.sh")
	cmd := exec.Command(script, "go", fmt.Sprintf("1.%d", tc.minor))
	cmd.Stderr = os.Stderr
	out, err := run(cmd, 20*time.Minute)
	if err != nil {
		return fmt.Errorf("%s: %w", script, err)
	}
	tc.gobin = strings.TrimSpace(string(out))
	tc.env = []string{"GOTOOLCHAIN=local"}
	return nil
}

// repoRoot walks up from the working directory to blindspot's go.mod.
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/blindspot-dev/blindspot\n")) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no blindspot go.mod above the working directory")
		}
		d = parent
	}
}

// run runs cmd, killing it after limit, and returns its standard output.
func run(cmd *exec.Cmd, limit time.Duration) ([]byte, error) {
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return stdout.Bytes(), err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		return nil, fmt.Errorf("timed out after %v", limit)
	}
}

func build(tc toolchain, dir, exe string) error {
	if _, err := os.Stat(tc.gobin); err != nil {
		return err
	}
	cmd := exec.Command(tc.gobin, "build", "-o", exe, ".")
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), tc.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if _, err := run(cmd, 5*time.Minute); err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// cleanEnv drops variables that would tie a build to another toolchain.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "GOROOT", "GOTOOLCHAIN", "GOFLAGS", "GOOS", "GOARCH":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "CGO_ENABLED=0")
}

type versionEntry struct {
	major, minor int
	structs      map[string]map[string]uint64
}

// read returns the Go release of exe and the offsets of the tableStructs
// fields its DWARF describes. It reads DWARF itself: symbols.StructFields
// cross-checks DWARF against the very table this command writes.
func read(exe string) (versionEntry, error) {
	bi, err := buildinfo.ReadFile(exe)
	if err != nil {
		return versionEntry{}, err
	}
	var e versionEntry
	if _, err := fmt.Sscanf(bi.GoVersion, "go%d.%d", &e.major, &e.minor); err != nil {
		return versionEntry{}, fmt.Errorf("unparsable go version %q", bi.GoVersion)
	}
	f, err := elf.Open(exe)
	if err != nil {
		return versionEntry{}, err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return versionEntry{}, fmt.Errorf("dwarf: %w", err)
	}
	all, err := dwarfStructs(d)
	if err != nil {
		return versionEntry{}, err
	}
	e.structs = map[string]map[string]uint64{}
	for _, spec := range tableStructs() {
		for _, f := range spec.Fields {
			off, ok := all[spec.Type][f]
			if !ok {
				continue // absent in this release
			}
			if e.structs[spec.Type] == nil {
				e.structs[spec.Type] = map[string]uint64{}
			}
			e.structs[spec.Type][f] = off
		}
	}
	return e, nil
}

// dwarfStructs returns the member offsets of every tableStructs type
// defined in d. A type defined twice with different members is an error.
func dwarfStructs(d *dwarf.Data) (map[string]map[string]uint64, error) {
	want := map[string]bool{}
	for _, spec := range tableStructs() {
		want[spec.Type] = true
	}
	out := map[string]map[string]uint64{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			return out, nil
		}
		if e.Tag == dwarf.TagCompileUnit {
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if e.Tag != dwarf.TagStructType || !want[name] || !e.Children {
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		fields, err := symbols.DWARFMembers(r)
		if err != nil {
			return nil, err
		}
		if prev, ok := out[name]; ok && !reflect.DeepEqual(prev, fields) {
			return nil, fmt.Errorf("dwarf defines %s twice, differently: %v and %v", name, prev, fields)
		}
		out[name] = fields
	}
}
