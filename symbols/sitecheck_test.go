package symbols

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckSite proves every probe site the site finder gives in every
// build, and refuses addresses inside instructions and entries computed
// from a wrong text base (as section-based bases were with external
// linking).
func TestCheckSite(t *testing.T) {
	for _, bd := range builds {
		t.Run(bd.name, func(t *testing.T) {
			b := open(t, bd.name)
			pcln, _ := funcTables(t, b)
			checked := 0
			for i, f := range allFuncs(t, b) {
				if i%7 != 0 && f.Name != "net/http.serverHandler.ServeHTTP" && f.Name != "net/http.(*response).finishRequest" {
					continue
				}
				if _, ok := pcln[f.Name]; !ok {
					continue // C functions of cgo builds have no pc tables
				}
				if strings.HasPrefix(f.Name, "go:text") {
					continue // markers such as go:textfipsend, not code
				}
				if b.asm[f.Entry] {
					if _, err := b.CheckSite(f.Entry); !errors.Is(err, ErrBadSite) {
						t.Errorf("%s: assembly accepted: %v", f.Name, err)
					}
					continue
				}
				s, err := b.Sites(f)
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range append([]uint64{f.Entry, s.Entry}, s.Returns...) {
					site, err := b.CheckSite(a)
					if err != nil {
						t.Fatalf("%s: %v", f.Name, err)
					}
					if len(site.Inst) == 0 || site.Addr != a {
						t.Fatalf("%s: site %+v", f.Name, site)
					}
					checked++
				}
				if s.Entry != f.Entry && s.Entry-f.Entry > 1 {
					if _, err := b.CheckSite(s.Entry - 1); !errors.Is(err, ErrBadSite) {
						t.Errorf("%s: one byte before the entry site accepted: %v", f.Name, err)
					}
				}
			}
			if checked < 1000 {
				t.Errorf("only %d sites checked", checked)
			}
			// The same binary read with the text base of .text (what the
			// parser did before it read the module descriptor): sites of
			// external builds must be refused, never probed.
			if sec := b.ef.Section(".text"); sec != nil && sec.Addr != b.pclnText {
				shifted := &Binary{Arch: b.Arch, ef: b.ef, loads: b.loads, asm: b.asm}
				delta := b.pclnText - sec.Addr
				shifted.pclnText = sec.Addr
				bt := b.funcs()
				st := &funcTable{byName: bt.byName, nameFile: bt.nameFile, nameMem: bt.nameMem, funcs: make([]funcRec, len(bt.funcs))}
				for i, f := range bt.funcs {
					f.entry -= delta
					st.funcs[i] = f
				}
				shifted.table.Store(st)
				f, err := shifted.LookupFunc("net/http.(*response).finishRequest")
				if err != nil {
					t.Fatal(err)
				}
				s, err := shifted.Sites(f)
				if err != nil {
					t.Fatal(err)
				}
				refused := 0
				for _, a := range append([]uint64{s.Entry}, s.Returns...) {
					if _, err := shifted.CheckSite(a); errors.Is(err, ErrBadSite) {
						refused++
					}
				}
				if refused == 0 {
					t.Errorf("sites from a text base off by %#x accepted", delta)
				}
			}
		})
	}
}

func TestPCValueBoundaries(t *testing.T) {
	// value -1→0 for 4 bytes, 0→8 for 10 bytes, end.
	got, err := pcValueBoundaries([]byte{0x02, 0x04, 0x10, 0x0a, 0x00}, 1)
	if err != nil || len(got) != 2 || got[0] != 4 || got[1] != 14 {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := pcValueBoundaries([]byte{0x02}, 1); err == nil {
		t.Error("truncated table accepted")
	}
}
