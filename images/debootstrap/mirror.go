package debootstrap

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// aptSource is one source of apt's configuration: a type (deb, deb-src),
// a URI, suites and components.
type aptSource struct {
	types, suites, components []string
	uri                       string
}

// HostMirrors returns the URLs of the host's apt sources for suite and
// for its security updates (suite-security; empty if the host has none):
// the mirrors a template is built from when none is given. etcApt is
// apt's configuration directory, /etc/apt. Both the one-line format
// (sources.list, *.list) and the deb822 one (*.sources) are read.
func HostMirrors(etcApt, suite string) (mirror, security string, err error) {
	var srcs []aptSource
	files := []string{filepath.Join(etcApt, "sources.list")}
	for _, pattern := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", pattern))
		files = append(files, m...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("debootstrap: read apt's sources: %w", err)
		}
		if strings.HasSuffix(f, ".sources") {
			srcs = append(srcs, parseDeb822(data)...)
		} else {
			srcs = append(srcs, parseOneLine(data)...)
		}
	}
	find := func(suite string) string {
		for _, s := range srcs {
			if slices.Contains(s.types, "deb") && slices.Contains(s.suites, suite) && slices.Contains(s.components, "main") {
				return s.uri
			}
		}
		return ""
	}
	mirror, security = find(suite), find(suite+"-security")
	if mirror == "" {
		return "", "", fmt.Errorf("debootstrap: no apt source on this host has Debian's %s suite (main) in %s/sources.list or %s/sources.list.d: give the mirror's URL with --mirror", suite, etcApt, etcApt)
	}
	return mirror, security, nil
}

// parseOneLine reads sources.list lines: "deb [options] URI suite
// component...".
func parseOneLine(data []byte) []aptSource {
	var out []aptSource
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		// Options in brackets ("[arch=amd64 signed-by=...]") say nothing
		// this needs.
		if i := strings.Index(line, "["); i >= 0 {
			if j := strings.Index(line[i:], "]"); j >= 0 {
				line = line[:i] + line[i+j+1:]
			}
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		out = append(out, aptSource{types: f[:1], uri: f[1], suites: f[2:3], components: f[3:]})
	}
	return out
}

// parseDeb822 reads *.sources paragraphs (Types, URIs, Suites,
// Components; Enabled: no skips one); each URI is a source.
func parseDeb822(data []byte) []aptSource {
	var out []aptSource
	fields := map[string]string{}
	last := ""
	flush := func() {
		if !strings.EqualFold(fields["enabled"], "no") {
			for _, uri := range strings.Fields(fields["uris"]) {
				out = append(out, aptSource{
					types: strings.Fields(fields["types"]), uri: uri,
					suites: strings.Fields(fields["suites"]), components: strings.Fields(fields["components"]),
				})
			}
		}
		fields, last = map[string]string{}, ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" { // a continuation line
				fields[last] += " " + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
	}
	flush()
	return out
}

// checkMirror checks a mirror URL given by the user: http or https, with
// a host.
func checkMirror(mirror string) error {
	u, err := url.Parse(mirror)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(mirror, " \t\n'\"\\") {
		return fmt.Errorf("debootstrap: mirror %q is not an http:// or https:// URL such as http://deb.debian.org/debian", mirror)
	}
	return nil
}

// buildAptKeys are the apt settings of the host that the build's apt
// takes over: how to reach the mirror (proxies, retries) and whether the
// mirror's Release files may be old (a snapshot mirror's are).
var buildAptKeys = []string{
	"Acquire::Check-Valid-Until", "Acquire::Check-Date", "Acquire::Retries",
	"Acquire::http::Proxy", "Acquire::https::Proxy",
}

// hostAptConf returns, as apt.conf lines, the host's buildAptKeys
// settings (from `apt-config dump`); nothing if apt-config is missing.
func hostAptConf(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "apt-config", "dump").Output()
	if err != nil {
		return ""
	}
	return aptConfLines(out)
}

// aptConfLines picks the buildAptKeys lines out of `apt-config dump`
// output ("Acquire::Check-Date "false";").
func aptConfLines(dump []byte) string {
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(dump))
	for sc.Scan() {
		key, _, ok := strings.Cut(sc.Text(), " ")
		if ok && slices.ContainsFunc(buildAptKeys, func(k string) bool { return strings.EqualFold(k, key) }) {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String()
}
