package bpfcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// This file reads what a BPF source declares, as far as the tests of the
// C/Go contract need: a small preprocessor (#include "…", #pragma once,
// object-like #define, #if defined(__TARGET_ARCH_…)) and a parser of the
// top-level declarations blindspot's sources use (named structs, enums,
// maps, SEC programs, globals). Anything it does not understand is an
// error, so that a new construct in bpf/ extends it rather than slips by.

// cUnit is one translation unit (a .c file and the headers it includes)
// as compiled for one target architecture.
type cUnit struct {
	defines map[string]string // object-like macros: name → replacement
	enums   map[string]*cEnum
	consts  map[string]int64 // every enumerator, by name
	structs map[string]*cStruct
	maps    map[string]*cStruct // anonymous struct … name SEC(".maps")
	progs   map[string]string   // function → section
	vars    map[string]string   // global variable → initializer ("" if none)
	files   []string            // every file read, in order
}

type cEnum struct {
	name   string
	values []cEnumerator
}

type cEnumerator struct {
	name  string
	value int64
}

type cStruct struct {
	name    string
	members []cMember
}

// cMember is one member: a plain declaration (typ with dims), or one of
// libbpf's map-definition macros (macro = __uint, __type or __array; arg
// holds its second argument).
type cMember struct {
	name  string
	typ   string
	dims  []string
	macro string
	arg   string
}

// uapiConsts are the kernel UAPI enumerators the sources use from
// <linux/bpf.h>, which the parser does not read (include/uapi/linux/bpf.h:
// values fixed by the kernel ABI).
var uapiConsts = map[string]int64{
	"BPF_MAP_TYPE_HASH":          1,
	"BPF_MAP_TYPE_ARRAY":         2,
	"BPF_MAP_TYPE_PERCPU_ARRAY":  6,
	"BPF_MAP_TYPE_LRU_HASH":      9,
	"BPF_MAP_TYPE_ARRAY_OF_MAPS": 12,
	"BPF_MAP_TYPE_RINGBUF":       27,
}

// ParseCUnit reads the translation unit of file with the given macros
// defined (e.g. __TARGET_ARCH_x86).
func ParseCUnit(file string, defined ...string) (*cUnit, error) {
	pp := &preprocessor{defined: map[string]bool{}, once: map[string]bool{}}
	for _, d := range defined {
		pp.defined[d] = true
	}
	u := &cUnit{
		defines: map[string]string{},
		enums:   map[string]*cEnum{},
		consts:  map[string]int64{},
		structs: map[string]*cStruct{},
		maps:    map[string]*cStruct{},
		progs:   map[string]string{},
		vars:    map[string]string{},
	}
	pp.u = u
	if err := pp.include(file); err != nil {
		return nil, err
	}
	if err := u.parse(tokenize(pp.out.String())); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return u, nil
}

type preprocessor struct {
	u       *cUnit
	defined map[string]bool
	once    map[string]bool
	out     strings.Builder
}

func (pp *preprocessor) include(file string) error {
	file = filepath.Clean(file)
	if pp.once[file] {
		return nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	pp.u.files = append(pp.u.files, file)
	// Each open #if: whether its current branch is active, whether an
	// earlier branch was taken, and whether the enclosing text is active.
	type cond struct{ active, taken, outer bool }
	var stack []cond
	active := func() bool { return len(stack) == 0 || stack[len(stack)-1].active }
	lines := strings.Split(stripComments(string(b)), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(lines[i])
		}
		if !strings.HasPrefix(line, "#") {
			if active() {
				pp.out.WriteString(line)
				pp.out.WriteByte('\n')
			}
			continue
		}
		where := fmt.Sprintf("%s:%d", file, i+1)
		dir, rest := cutSpace(strings.TrimSpace(line[1:]))
		switch dir {
		case "if", "ifdef", "ifndef":
			ok, err := pp.condition(dir, rest)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			outer := active()
			stack = append(stack, cond{active: outer && ok, taken: ok, outer: outer})
		case "elif":
			if len(stack) == 0 {
				return fmt.Errorf("%s: #elif without #if", where)
			}
			ok, err := pp.condition("if", rest)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			c := &stack[len(stack)-1]
			c.active = c.outer && !c.taken && ok
			c.taken = c.taken || ok
		case "else":
			if len(stack) == 0 {
				return fmt.Errorf("%s: #else without #if", where)
			}
			c := &stack[len(stack)-1]
			c.active = c.outer && !c.taken
			c.taken = true
		case "endif":
			if len(stack) == 0 {
				return fmt.Errorf("%s: #endif without #if", where)
			}
			stack = stack[:len(stack)-1]
		default:
			if !active() {
				continue
			}
			switch dir {
			case "pragma":
				if rest == "once" {
					pp.once[file] = true
				}
			case "include":
				if strings.HasPrefix(rest, `"`) {
					name := strings.Trim(rest, `"`)
					if err := pp.include(filepath.Join(filepath.Dir(file), name)); err != nil {
						return fmt.Errorf("%s: %w", where, err)
					}
				} // <…>: system and libbpf headers are not read
			case "define":
				name, body := cutSpace(rest)
				if strings.Contains(name, "(") {
					continue // function-like: not a constant
				}
				pp.u.defines[name] = body
				pp.defined[name] = true
			case "error":
				return fmt.Errorf("%s: #error %s", where, rest)
			default:
				return fmt.Errorf("%s: directive #%s not understood", where, dir)
			}
		}
	}
	if len(stack) != 0 {
		return fmt.Errorf("%s: unterminated #if", file)
	}
	return nil
}

// cutSpace splits s at its first run of white space.
func cutSpace(s string) (before, after string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// condition evaluates the conditions the sources use: defined(NAME),
// !defined(NAME), #ifdef and #ifndef.
func (pp *preprocessor) condition(dir, expr string) (bool, error) {
	switch dir {
	case "ifdef":
		return pp.defined[expr], nil
	case "ifndef":
		return !pp.defined[expr], nil
	}
	neg := strings.HasPrefix(expr, "!")
	expr = strings.TrimSpace(strings.TrimPrefix(expr, "!"))
	if !strings.HasPrefix(expr, "defined(") || !strings.HasSuffix(expr, ")") {
		return false, fmt.Errorf("condition %q not understood", expr)
	}
	name := strings.TrimSpace(expr[len("defined(") : len(expr)-1])
	return pp.defined[name] != neg, nil
}

// stripComments replaces comments by spaces, keeping line breaks and
// string and character literals.
func stripComments(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"' || s[i] == '\'':
			q := s[i]
			b.WriteByte(q)
			for i++; i < len(s) && s[i] != q; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					b.WriteByte(s[i])
					i++
				}
				b.WriteByte(s[i])
			}
			if i < len(s) {
				b.WriteByte(q)
			}
		case strings.HasPrefix(s[i:], "//"):
			for i < len(s) && s[i] != '\n' {
				i++
			}
			if i < len(s) {
				b.WriteByte('\n')
			}
		case strings.HasPrefix(s[i:], "/*"):
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				end = len(s) - i - 2
			}
			for _, c := range s[i : i+2+end] {
				if c == '\n' {
					b.WriteByte('\n')
				}
			}
			b.WriteByte(' ')
			i += end + 3
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// tokenize splits C text into identifiers, numbers, string literals and
// punctuators (the two-character ones the sources use as one token).
func tokenize(s string) []string {
	var toks []string
	isIdent := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case isIdent(c):
			j := i
			for j < len(s) && (isIdent(s[j]) || s[j] == '.' && c >= '0' && c <= '9') {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			toks = append(toks, s[i:min(j+1, len(s))])
			i = j + 1
		default:
			n := 1
			for _, p := range []string{"<<", ">>", "->", "==", "!=", "<=", ">=", "&&", "||", "++", "--", "+=", "-=", "|=", "&="} {
				if strings.HasPrefix(s[i:], p) {
					n = 2
					break
				}
			}
			toks = append(toks, s[i:i+n])
			i += n
		}
	}
	return toks
}

// parse reads the top-level declarations of a preprocessed unit.
func (u *cUnit) parse(toks []string) error {
	for len(toks) > 0 {
		item, isFunc, rest, err := nextItem(toks)
		if err != nil {
			return err
		}
		toks = rest
		if err := u.declare(item, isFunc); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(item[:min(len(item), 8)], " "), err)
		}
	}
	return nil
}

// nextItem splits off one top-level item: a declaration up to its ';', or
// a function definition up to the end of its body.
func nextItem(toks []string) (item []string, isFunc bool, rest []string, err error) {
	depth := 0
	for i, t := range toks {
		switch t {
		case "(", "[":
			depth++
		case ")", "]":
			depth--
		case "{":
			if depth == 0 && i > 0 && toks[i-1] == ")" {
				end, err := matching(toks, i)
				if err != nil {
					return nil, false, nil, err
				}
				return toks[:end+1], true, toks[end+1:], nil
			}
			depth++
		case "}":
			depth--
		case ";":
			if depth == 0 {
				return toks[:i+1], false, toks[i+1:], nil
			}
		}
	}
	return nil, false, nil, fmt.Errorf("unterminated declaration %q", strings.Join(toks[:min(len(toks), 8)], " "))
}

// matching returns the index of the bracket that closes toks[open].
func matching(toks []string, open int) (int, error) {
	pairs := map[string]string{"{": "}", "(": ")", "[": "]"}
	want := pairs[toks[open]]
	depth := 0
	for i := open; i < len(toks); i++ {
		switch toks[i] {
		case toks[open]:
			depth++
		case want:
			depth--
			if depth == 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("unbalanced %q", toks[open])
}

func (u *cUnit) declare(item []string, isFunc bool) error {
	if isFunc {
		// A BPF program is a function with a SEC("…") attribute; the
		// others are helpers inlined into them.
		for i := 0; i+3 < len(item); i++ {
			if item[i] == "SEC" && item[i+1] == "(" {
				sec, err := strconv.Unquote(item[i+2])
				if err != nil {
					return err
				}
				for j := i + 4; j+1 < len(item); j++ {
					if item[j+1] == "(" {
						u.progs[item[j]] = sec
						return nil
					}
				}
				return fmt.Errorf("program without a name")
			}
		}
		return nil
	}
	switch {
	case item[0] == "typedef":
		return nil
	case item[0] == "struct" && len(item) > 2 && item[1] != "{" && item[2] == "{":
		end, err := matching(item, 2)
		if err != nil {
			return err
		}
		if end+1 >= len(item) || item[end+1] != ";" {
			return fmt.Errorf("struct %s: a definition with declarators", item[1])
		}
		s, err := parseMembers(item[1], item[3:end])
		if err != nil {
			return err
		}
		u.structs[s.name] = s
		return nil
	case item[0] == "struct" && item[1] == "{":
		// struct { … } name SEC(".maps");
		end, err := matching(item, 1)
		if err != nil {
			return err
		}
		tail := item[end+1:]
		if len(tail) < 6 || tail[1] != "SEC" || tail[3] != `".maps"` {
			return fmt.Errorf("an anonymous struct that is not a map definition")
		}
		s, err := parseMembers(tail[0], item[2:end])
		if err != nil {
			return err
		}
		u.maps[s.name] = s
		return nil
	case item[0] == "enum" && len(item) > 2 && item[2] == "{":
		end, err := matching(item, 2)
		if err != nil {
			return err
		}
		return u.parseEnum(item[1], item[3:end])
	}
	// A global variable: its name is the identifier before the first
	// '[', '=', SEC, __attribute__ or ';'.
	name, init := "", ""
	for i, t := range item {
		if t == "[" || t == "=" || t == "SEC" || t == "__attribute__" || t == ";" {
			name = item[i-1]
			break
		}
	}
	for i, t := range item {
		if t == "=" {
			init = strings.Join(item[i+1:len(item)-1], " ")
			break
		}
	}
	if name == "" || !isCIdent(name) {
		return fmt.Errorf("declaration not understood")
	}
	u.vars[name] = init
	return nil
}

func isCIdent(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range s {
		if c != '_' && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// parseMembers reads a struct's member declarations.
func parseMembers(name string, body []string) (*cStruct, error) {
	s := &cStruct{name: name}
	for len(body) > 0 {
		end := -1
		depth := 0
		for i, t := range body {
			if t == "(" || t == "[" || t == "{" {
				depth++
			} else if t == ")" || t == "]" || t == "}" {
				depth--
			} else if t == ";" && depth == 0 {
				end = i
				break
			}
		}
		if end < 0 {
			return nil, fmt.Errorf("struct %s: member without ';'", name)
		}
		decl := body[:end]
		body = body[end+1:]
		if len(decl) == 0 {
			continue
		}
		switch decl[0] {
		case "__uint", "__type", "__array":
			// __uint(name, value), __type(name, type), __array(name, type)
			if len(decl) < 6 || decl[1] != "(" || decl[3] != "," || decl[len(decl)-1] != ")" {
				return nil, fmt.Errorf("struct %s: %s not understood", name, strings.Join(decl, " "))
			}
			s.members = append(s.members, cMember{name: decl[2], macro: decl[0], arg: strings.Join(decl[4:len(decl)-1], " ")})
			continue
		}
		// A type, then declarators separated by commas.
		i := 0
		var typ []string
		for i < len(decl) && (decl[i] == "const" || decl[i] == "volatile" || decl[i] == "unsigned" || decl[i] == "signed") {
			typ = append(typ, decl[i])
			i++
		}
		if i < len(decl) && (decl[i] == "struct" || decl[i] == "enum" || decl[i] == "union") {
			typ = append(typ, decl[i])
			i++
		}
		if i >= len(decl) || !isCIdent(decl[i]) {
			return nil, fmt.Errorf("struct %s: member %s not understood", name, strings.Join(decl, " "))
		}
		typ = append(typ, decl[i])
		i++
		for i < len(decl) {
			m := cMember{typ: strings.Join(typ, " ")}
			for i < len(decl) && decl[i] == "*" {
				m.typ += "*"
				i++
			}
			if i >= len(decl) || !isCIdent(decl[i]) {
				return nil, fmt.Errorf("struct %s: member %s not understood", name, strings.Join(decl, " "))
			}
			m.name = decl[i]
			i++
			for i < len(decl) && decl[i] == "[" {
				close, err := matching(decl, i)
				if err != nil {
					return nil, err
				}
				m.dims = append(m.dims, strings.Join(decl[i+1:close], " "))
				i = close + 1
			}
			s.members = append(s.members, m)
			if i < len(decl) {
				if decl[i] != "," {
					return nil, fmt.Errorf("struct %s: member %s not understood", name, strings.Join(decl, " "))
				}
				i++
			}
		}
	}
	return s, nil
}

func (u *cUnit) parseEnum(name string, body []string) error {
	e := &cEnum{name: name}
	next := int64(0)
	for len(body) > 0 {
		end := len(body)
		for i, t := range body {
			if t == "," {
				end = i
				break
			}
		}
		decl := body[:end]
		if end < len(body) {
			body = body[end+1:]
		} else {
			body = nil
		}
		if len(decl) == 0 {
			continue
		}
		v := next
		if len(decl) > 2 && decl[1] == "=" {
			var err error
			if v, err = u.eval(strings.Join(decl[2:], " ")); err != nil {
				return fmt.Errorf("enum %s: %s: %w", name, decl[0], err)
			}
		} else if len(decl) != 1 {
			return fmt.Errorf("enum %s: %s not understood", name, strings.Join(decl, " "))
		}
		e.values = append(e.values, cEnumerator{decl[0], v})
		u.consts[decl[0]] = v
		next = v + 1
	}
	u.enums[name] = e
	return nil
}

// constant returns the value of a #define or an enumerator, and where it
// was found ("#define" or "enum NAME").
func (u *cUnit) constant(name string) (int64, string, error) {
	if _, ok := u.defines[name]; ok {
		v, err := u.eval(name)
		return v, "#define", err
	}
	for _, e := range u.enums {
		for _, ev := range e.values {
			if ev.name == name {
				return ev.value, "enum " + e.name, nil
			}
		}
	}
	return 0, "", fmt.Errorf("%s is not declared in %s", name, u.files[0])
}

// eval evaluates an integer constant expression of literals, macros,
// enumerators, parentheses and the operators | << >> + - * ~.
func (u *cUnit) eval(expr string) (int64, error) {
	e := &cExpr{u: u, toks: tokenize(expr)}
	v, err := e.binary(0)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", expr, err)
	}
	if len(e.toks) != 0 {
		return 0, fmt.Errorf("%q: unexpected %q", expr, e.toks[0])
	}
	return v, nil
}

type cExpr struct {
	u     *cUnit
	toks  []string
	depth int
}

var cPrec = map[string]int{"|": 1, "&": 2, "<<": 3, ">>": 3, "+": 4, "-": 4, "*": 5}

func (e *cExpr) binary(min int) (int64, error) {
	x, err := e.unary()
	if err != nil {
		return 0, err
	}
	for len(e.toks) > 0 {
		op := e.toks[0]
		p, ok := cPrec[op]
		if !ok || p < min {
			break
		}
		e.toks = e.toks[1:]
		y, err := e.binary(p + 1)
		if err != nil {
			return 0, err
		}
		switch op {
		case "|":
			x |= y
		case "&":
			x &= y
		case "<<":
			x <<= y
		case ">>":
			x >>= y
		case "+":
			x += y
		case "-":
			x -= y
		case "*":
			x *= y
		}
	}
	return x, nil
}

func (e *cExpr) unary() (int64, error) {
	if len(e.toks) == 0 {
		return 0, fmt.Errorf("unexpected end")
	}
	t := e.toks[0]
	e.toks = e.toks[1:]
	switch {
	case t == "-":
		v, err := e.unary()
		return -v, err
	case t == "~":
		v, err := e.unary()
		return ^v, err
	case t == "(":
		v, err := e.binary(0)
		if err != nil {
			return 0, err
		}
		if len(e.toks) == 0 || e.toks[0] != ")" {
			return 0, fmt.Errorf("missing )")
		}
		e.toks = e.toks[1:]
		return v, nil
	case t[0] >= '0' && t[0] <= '9':
		v, err := strconv.ParseInt(strings.TrimRight(t, "uUlL"), 0, 64)
		return v, err
	case isCIdent(t):
		if v, ok := e.u.consts[t]; ok {
			return v, nil
		}
		if v, ok := uapiConsts[t]; ok {
			return v, nil
		}
		if body, ok := e.u.defines[t]; ok {
			if e.depth > 16 {
				return 0, fmt.Errorf("macro %s: too deep", t)
			}
			sub := &cExpr{u: e.u, toks: tokenize(body), depth: e.depth + 1}
			v, err := sub.binary(0)
			if err == nil && len(sub.toks) != 0 {
				err = fmt.Errorf("macro %s: unexpected %q", t, sub.toks[0])
			}
			return v, err
		}
		return 0, fmt.Errorf("%s is not a known constant", t)
	}
	return 0, fmt.Errorf("unexpected %q", t)
}
