package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a VM config file. Real ones are a few hundred bytes;
// the bound keeps `-f /dev/zero` from reading forever.
const MaxFileSize = 1 << 20

// Load reads the VM config at path: strict YAML decoding (unknown fields,
// wrong types, duplicate keys and extra documents are errors), then kernel,
// initrd and console.log paths resolved against the file's directory with ~
// expanded. Every problem is reported, joined; each is an *Error. Defaults
// are not filled: call FillDefaults, then Validate. path must be a regular
// file: a FIFO or a device is refused at once, never waited on (Read takes
// a stream).
//
// A file that is YAML but breaks the schema comes back with its problems
// and the VM as far as it decoded: FillDefaults and Validate on it report
// those problems again together with the values' own, so a caller that
// wants every problem of the file at once validates the VM it got. Such a
// VM never validates. The VM is nil when the file could not be read or is
// not a YAML mapping.
func Load(path string) (*VM, error) {
	f, _, err := openRegular(path)
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	defer f.Close()
	return Read(f, path)
}

// Read is Load from an open reader (say, standard input); path names the
// config in messages and its directory anchors relative paths.
func Read(r io.Reader, path string) (*VM, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, &Error{File: displayName(path), Err: fmt.Errorf("read: %w", pathErr(err))}
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: displayName(path), Err: fmt.Errorf("larger than %s: not a VM config", ByteSize(MaxFileSize))}
	}
	return Parse(data, path)
}

// displayName is how messages name the config at path.
func displayName(path string) string {
	if path == "" {
		return "<input>"
	}
	return path
}

// pathErr drops the operation and path from a *fs.PathError, for messages
// that already name the file.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse is Load from bytes already read. path names the config in messages
// (empty: "<input>") and its directory anchors relative paths (empty or a
// bare file name: the current directory).
func Parse(data []byte, path string) (*VM, error) {
	name := displayName(path)
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, &Error{File: name, Err: fmt.Errorf("resolve the config's directory: %w", err)}
	}
	root, err := parseDocument(data, name)
	if err != nil {
		return nil, err
	}
	d := &decoder{
		dir: dir,
		src: &source{file: name, root: pos{1, 1}, fields: map[string]pos{}, failed: map[string]bool{}},
	}
	vm := &VM{src: d.src}
	if root != nil {
		d.src.root = pos{root.Line, root.Column}
		d.decodeVM(root, vm)
	}
	if d.dropped > 0 {
		d.errs = append(d.errs, &Error{File: name, Err: fmt.Errorf("%d more problems not shown", d.dropped)})
	}
	if len(d.errs) > 0 {
		d.src.problems = d.errs
		return vm, joinProblems(d.errs)
	}
	return vm, nil
}

// parseDocument parses data as exactly one YAML document and returns its
// top-level node, or nil if the document is empty.
func parseDocument(data []byte, name string) (*yaml.Node, error) {
	if err := checkText(data, name); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // no document at all: an empty file or only comments
		}
		return nil, syntaxError(err, data, name)
	}
	// Further documents are an error unless empty (a trailing "---").
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxError(err, data, name)
		}
		if len(next.Content) > 0 && !isNull(next.Content[0]) {
			return nil, &Error{File: name, Line: next.Line, Column: next.Column,
				Err: errors.New("a second YAML document: a config file describes one VM")}
		}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := resolveAlias(doc.Content[0])
	if isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: name, Line: root.Line, Column: root.Column,
			Err: fmt.Errorf("a VM config must be a mapping of fields (name: ..., kernel: ...), got %s", describe(root))}
	}
	return root, nil
}

// checkText rejects bytes YAML does not allow (invalid UTF-8, control
// characters) with their line and column: the YAML reader reports these
// without a position.
func checkText(data []byte, name string) error {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		bad := ""
		switch {
		case r == utf8.RuneError && size <= 1:
			bad = fmt.Sprintf("invalid UTF-8 byte %#02x: config files must be UTF-8", data[i])
		case !yamlPrintable(r):
			bad = fmt.Sprintf("control character %U is not allowed in YAML", r)
		}
		if bad != "" {
			return &Error{File: name, Line: line, Column: col, Err: errors.New(bad)}
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return nil
}

// yamlPrintable reports whether YAML allows r in a stream (YAML 1.2 §5.1).
func yamlPrintable(r rune) bool {
	switch {
	case r == '\t' || r == '\n' || r == '\r' || r == 0x85:
		return true
	case r >= 0x20 && r <= 0x7e:
		return true
	case r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}

// isParserProblem reports whether msg is a problem yaml.v3 reports from
// its parser (as opposed to its scanner). For these it prints a 0-based line
// (of the enclosing collection's start, or of the problem), for scanner
// problems a 1-based one; both omit the line when the 0-based line is 0.
func isParserProblem(msg string) bool {
	switch msg {
	case "did not find expected <stream-start>",
		"did not find expected <document start>",
		"found undefined tag handle",
		"did not find expected node content",
		"did not find expected '-' indicator",
		"did not find expected key",
		"did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"found duplicate %YAML directive",
		"found incompatible YAML document",
		"found duplicate %TAG directive":
		return true
	}
	return false
}

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: problem") into an
// *Error with a 1-based line. yaml.v3 gives no column; when the line is
// indented with a tab, the usual mistake, the error points at the tab.
func syntaxError(err error, data []byte, name string) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, problem, ok := strings.Cut(rest, ": "); ok {
			if v, err := strconv.Atoi(n); err == nil {
				line, msg = v, problem
			}
		}
	}
	switch {
	case strings.HasPrefix(msg, "unknown anchor"):
		line = 0 // reported without a position
	case line == 0:
		line = 1
	case isParserProblem(msg):
		line++
	}
	e := &Error{File: name, Line: line, Err: fmt.Errorf("invalid YAML: %s", msg)}
	// The tab problem's line is that of the scalar before the tab (blank
	// and comment lines may follow it): look on.
	last := line
	if strings.Contains(msg, "tab character") {
		last = math.MaxInt
	}
	if l, col := tabIndent(data, line, last); col > 0 {
		e.Line, e.Column = l, col
		e.Err = fmt.Errorf("invalid YAML: %s: YAML indentation must use spaces, not tabs", msg)
	}
	return e
}

// tabIndent finds the first line from first to last (1-based) of data
// whose indentation holds a tab, and returns it with the tab's 1-based
// column; col is 0 if there is none.
func tabIndent(data []byte, first, last int) (line, col int) {
	if first < 1 {
		return 0, 0
	}
	line, start := 1, 0
	for line < first {
		nl := bytes.IndexByte(data[start:], '\n')
		if nl < 0 {
			return 0, 0
		}
		start += nl + 1
		line++
	}
	for ; line <= last && start <= len(data); line++ {
		end := bytes.IndexByte(data[start:], '\n')
		if end < 0 {
			end = len(data) - start
		}
		for i, c := range data[start : start+end] {
			if c == '\t' {
				return line, i + 1
			}
			if c != ' ' {
				break
			}
		}
		start += end + 1
	}
	return 0, 0
}

// isNull reports whether n is an explicit or implicit null (`key:`, `~`).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// resolveAlias follows an alias (*name) to the node it names.
func resolveAlias(n *yaml.Node) *yaml.Node {
	// The parser only creates aliases to anchors defined earlier, but an
	// alias may name another alias; the bound keeps odd inputs finite.
	for i := 0; i < 100 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

// describe names the kind of a node for type errors: "a mapping", "a list",
// "the number 3", "the string \"x\"".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!null":
		return "null"
	case "!!bool":
		return "the boolean " + n.Value
	case "!!int", "!!float":
		return "the number " + n.Value // a YAML number is short
	case "!!binary":
		return "binary data"
	}
	return quote(n.Value)
}
