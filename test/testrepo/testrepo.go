// Package testrepo answers, for tests and tools, questions about the
// blindspot source tree itself: where it is, and what the agent declares.
package testrepo

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Root walks up from the working directory to blindspot's go.mod.
func Root() (string, error) {
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

// DeclaredCaps returns the capabilities the agent declares it needs
// (neededCaps in cmd/agent/checks.go), in order, as "CAP_BPF", ...: the
// one list the tests, the systemd unit and the manifests are checked
// against.
func DeclaredCaps(root string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "cmd/agent/checks.go"), nil, 0)
	if err != nil {
		return nil, err
	}
	var caps []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "neededCaps" {
			return true
		}
		ast.Inspect(vs, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "CAP_") {
					caps = append(caps, s)
				}
			}
			return true
		})
		return false
	})
	if len(caps) == 0 {
		return nil, fmt.Errorf("no capabilities found in neededCaps of cmd/agent/checks.go")
	}
	return caps, nil
}
