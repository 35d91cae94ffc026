// Package debootstraptest builds the debian-12 template's files once for
// every test that needs them (images/debootstrap's own, the lab's): a
// real build takes minutes, so its result is kept in paddock's cache
// under a key that is a hash of the builder's sources (its Go files,
// build.sh and the guest's configuration files). Any change to the
// builder builds anew; tests in several processes share one build
// (images/cache serialises them).
package debootstraptest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/debootstrap"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// Built is a built template, committed to a template store in the
// cache: read, never write.
type Built struct {
	// Dir is the template's directory (store.Template's): its
	// template.json, spec.yaml and lock, and debootstrap.KernelFile,
	// InitrdFile and DiskFile.
	Dir    string
	Result debootstrap.Result
	// Log is the build's output, when this process built it.
	Log string
}

// Name is the template's name.
const Name = "debian-12"

// Path returns the path of one of the files.
func (b *Built) Path(file string) string { return filepath.Join(b.Dir, file) }

// resultFile holds the Result in a cache entry.
const resultFile = "result.json"

// cachePrefix is where the entries live in the cache.
const cachePrefix = "test-templates"

// BuildTimeout bounds one build: minutes of downloads and dpkg on a
// loaded machine.
const BuildTimeout = 30 * time.Minute

var (
	once     sync.Once
	built    *Built
	buildErr error
)

// Template returns the debian-12 template, built with the default
// options from the host's mirror by guest.Manager.BuildTemplate into a
// template store in the cache, building it if the cache has no build of
// the current sources. It needs root, debootstrap and
// the Debian mirror (tb ends with testenv.Unavailable otherwise) and
// declares tb an Oracle test (it runs debootstrap and apt).
func Template(tb testing.TB) *Built {
	tb.Helper()
	testenv.RequireRoot(tb, "a template build installs packages as root")
	testenv.RequireTool(tb, "debootstrap", "debootstrap")
	testenv.RequireTool(tb, "mkfs.ext4", "e2fsprogs")
	once.Do(func() { built, buildErr = build(tb) })
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return built
}

func build(tb testing.TB) (*Built, error) {
	c, err := cache.Default()
	if err != nil {
		return nil, err
	}
	id, err := sourcesID()
	if err != nil {
		return nil, err
	}
	key := cachePrefix + "/" + Name + "-" + id
	r, err := debootstrap.LookupRelease(Name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
	defer cancel()
	out := &Built{}
	dir, err := c.Ensure(ctx, key, func(tmp string) error {
		logf, err := os.CreateTemp("", "paddock-template-build-*.log")
		if err != nil {
			return err
		}
		defer logf.Close()
		out.Log = logf.Name()
		tb.Logf("building the %s template (minutes); its output goes to %s", Name, logf.Name())
		m, err := guest.Open(guest.Options{Home: filepath.Join(tmp, "home")})
		if err != nil {
			return err
		}
		_, res, err := m.BuildTemplate(ctx, Name, debootstrap.Options{
			Release: r, Cache: c,
			Step:   func(s string) { fmt.Fprintf(logf, "@@ %s %s\n", time.Now().Format(time.TimeOnly), s) },
			Output: func(l string) { fmt.Fprintln(logf, l) },
		})
		if err != nil {
			return fmt.Errorf("build the debian-12 template (log: %s): %w", logf.Name(), err)
		}
		data, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tmp, resultFile), data, 0o644)
	})
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, resultFile))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &out.Result); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, resultFile), err)
	}
	out.Dir = filepath.Join(dir, "home", "templates", Name)
	prune(c, key)
	return out, nil
}

// prune removes the cached builds of older sources.
func prune(c *cache.Cache, keep string) {
	keys, err := c.Entries(cachePrefix)
	if err != nil {
		return
	}
	for _, k := range keys {
		if k != keep {
			os.RemoveAll(c.Path(k))
		}
	}
}

// storeSources are the files, relative to the module's root, that make
// a built template's directory besides package debootstrap: what writes
// template.json and spec.yaml.
var storeSources = []string{
	"guest/template_build.go", "guest/store/template_meta.go", "guest/store/template_stage.go",
}

// sourcesID hashes the builder's sources: the files of package
// debootstrap, found beside this package's own source, and storeSources.
func sourcesID() (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("debootstraptest: cannot find the builder's sources")
	}
	dir := filepath.Dir(filepath.Dir(self))
	root := filepath.Join(dir, "..", "..")
	h := sha256.New()
	for _, f := range storeSources {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", fmt.Errorf("debootstraptest: hash the builder's sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(data))
		h.Write(data)
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			if rel == "debootstraptest" {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", rel, len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("debootstraptest: hash the builder's sources in %s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
