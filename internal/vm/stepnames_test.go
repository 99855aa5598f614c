package vm

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// stepOps names the operation each function holding named steps or
// fault points belongs to, as the crash suite and the docs group them.
// A new function with steps must be added here, and its steps to the
// crash suite (test/e2e/crash_test.go) and docs/lifecycle.md.
var stepOps = map[string]string{
	"Create":              "create",
	"startLocked":         "start",
	"stopIf":              "stop",
	"settleStoppedLocked": "stop",
	"removeLocked":        "delete",
}

// Files that list the steps, relative to this package.
const (
	crashSuiteFile = "../../test/e2e/crash_test.go"
	lifecycleDoc   = "../../docs/lifecycle.md"
)

// TestStepNamesListed keeps the crash suite and the docs in step with
// the code: every name a faultinject build can die at (the name of a
// step given to runSteps, or the argument of a faultPoint call) must be
// in the crash suite's list and the docs' table for its operation, and
// those lists must name no step the code lacks.
func TestStepNamesListed(t *testing.T) {
	code := codeStepNames(t)
	if len(code["create"]) == 0 || len(code["start"]) == 0 || len(code["stop"]) == 0 || len(code["delete"]) == 0 {
		t.Fatalf("found steps %v in the code, want steps for create, start, stop and delete", code)
	}
	for _, src := range []struct {
		name  string
		lists map[string][]string
	}{
		{crashSuiteFile, crashSuiteStepNames(t)},
		{lifecycleDoc, docStepNames(t)},
	} {
		t.Run(filepath.Base(src.name), func(t *testing.T) {
			for _, op := range []string{"create", "start", "stop", "delete"} {
				got, want := sorted(src.lists[op]), sorted(code[op])
				if !slices.Equal(got, want) {
					t.Errorf("%s: %s steps are %v, want %v (the step names in internal/vm)", src.name, op, got, want)
				}
			}
		})
	}
}

// codeStepNames collects the step names of this package's non-test
// files by operation.
func codeStepNames(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	names := map[string][]string{}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			add := func(pos token.Pos, expr ast.Expr) {
				name, ok := stringLit(expr)
				if !ok {
					t.Errorf("%s: step name %s is not a string literal; the crash suite cannot list it", fset.Position(pos), exprString(expr))
					return
				}
				op, ok := stepOps[fn.Name.Name]
				if !ok {
					t.Errorf("%s: step %q in function %s, which stepOps does not map to an operation", fset.Position(pos), name, fn.Name.Name)
					return
				}
				names[op] = append(names[op], name)
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CompositeLit:
					if isIdent(n.Type, "step") {
						stepLitName(n, add)
					}
					if arr, ok := n.Type.(*ast.ArrayType); ok && isIdent(arr.Elt, "step") {
						for _, elt := range n.Elts {
							if lit, ok := elt.(*ast.CompositeLit); ok && lit.Type == nil {
								stepLitName(lit, add)
							}
						}
					}
				case *ast.CallExpr:
					// faultPoint(s.name) in runSteps is the steps' own hook.
					if isIdent(n.Fun, "faultPoint") && len(n.Args) == 1 && fn.Name.Name != "runSteps" {
						add(n.Pos(), n.Args[0])
					}
				}
				return true
			})
		}
	}
	return names
}

// stepLitName passes the name field of a step literal to add.
func stepLitName(lit *ast.CompositeLit, add func(token.Pos, ast.Expr)) {
	for _, elt := range lit.Elts {
		if kv, ok := elt.(*ast.KeyValueExpr); ok && isIdent(kv.Key, "name") {
			add(kv.Pos(), kv.Value)
		}
	}
}

// crashSuiteStepNames reads TestCrashAtEveryStep's lists: in each
// t.Run("OP", ...) the []string literal its steps range over.
func crashSuiteStepNames(t *testing.T) map[string][]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, crashSuiteFile, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse the crash suite: %v", err)
	}
	names := map[string][]string{}
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "TestCrashAtEveryStep" {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			op, isLit := stringLit(call.Args[0])
			body, isFunc := call.Args[1].(*ast.FuncLit)
			if !ok || sel.Sel.Name != "Run" || !isLit || !isFunc {
				return true
			}
			ast.Inspect(body.Body, func(n ast.Node) bool {
				rng, ok := n.(*ast.RangeStmt)
				if !ok {
					return true
				}
				lit, ok := rng.X.(*ast.CompositeLit)
				if arr, isArr := lit.Type.(*ast.ArrayType); !ok || !isArr || !isIdent(arr.Elt, "string") {
					return true
				}
				for _, elt := range lit.Elts {
					if s, ok := stringLit(elt); ok {
						names[op] = append(names[op], s)
					}
				}
				return false
			})
			return false
		})
	}
	if len(names) == 0 {
		t.Fatalf("%s: found no step lists in TestCrashAtEveryStep", crashSuiteFile)
	}
	return names
}

// docStepNames reads the fault injection table of the docs: rows
// "| OP | `step`, `step` ... |" under the heading "## Fault injection".
func docStepNames(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(lifecycleDoc)
	if err != nil {
		t.Fatalf("read the docs: %v", err)
	}
	defer f.Close()
	names := map[string][]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Fault injection"
			continue
		}
		cells := strings.Split(line, "|")
		if !in || len(cells) < 4 {
			continue
		}
		op := strings.TrimSpace(cells[1])
		for i, part := range strings.Split(cells[2], "`") {
			if i%2 == 1 {
				names[op] = append(names[op], part)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read the docs: %v", err)
	}
	if len(names) == 0 {
		t.Fatalf("%s: no step table under \"## Fault injection\"", lifecycleDoc)
	}
	return names
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// exprString describes a non-literal expression for an error message.
func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	}
	return "(an expression)"
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
