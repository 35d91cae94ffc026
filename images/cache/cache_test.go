package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// build records one build in counter (appending a line) and writes a
// file into the entry.
func countingBuild(counter string) func(tmp string) error {
	return func(tmp string) error {
		f, err := os.OpenFile(counter, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintln(f, os.Getpid()); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tmp, "payload"), []byte("built"), 0o644)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func TestEnsureBuildsOnceAcrossGoroutines(t *testing.T) {
	c := New(t.TempDir())
	counter := filepath.Join(t.TempDir(), "builds")
	var wg sync.WaitGroup
	dirs := make([]string, 8)
	errs := make([]error, 8)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dirs[i], errs[i] = c.Ensure(context.Background(), "k/v1", countingBuild(counter))
		}()
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if dirs[i] != c.Path("k/v1") {
			t.Errorf("caller %d got %s, want %s", i, dirs[i], c.Path("k/v1"))
		}
	}
	if n := countLines(t, counter); n != 1 {
		t.Errorf("built %d times, want 1", n)
	}
	if b, err := os.ReadFile(filepath.Join(c.Path("k/v1"), "payload")); err != nil || string(b) != "built" {
		t.Errorf("payload %q, %v", b, err)
	}
	keys, err := c.Entries("k")
	if err != nil || len(keys) != 1 || keys[0] != "k/v1" {
		t.Errorf("Entries(k) = %v, %v; want [k/v1]", keys, err)
	}
}

// TestMain doubles as the helper process of
// TestEnsureBuildsOnceAcrossProcesses: with $CACHE_HELPER_DIR set it
// ensures one entry there, counting builds in $CACHE_HELPER_COUNTER, and
// exits.
func TestMain(m *testing.M) {
	if dir := os.Getenv("CACHE_HELPER_DIR"); dir != "" {
		if _, err := New(dir).Ensure(context.Background(), "shared/entry", countingBuild(os.Getenv("CACHE_HELPER_COUNTER"))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestEnsureBuildsOnceAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	counter := filepath.Join(t.TempDir(), "builds")
	var cmds []*exec.Cmd
	for i := 0; i < 4; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "CACHE_HELPER_DIR="+dir, "CACHE_HELPER_COUNTER="+counter)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	if n := countLines(t, counter); n != 1 {
		t.Errorf("built %d times across processes, want 1", n)
	}
}

func TestEnsureFailureCachesNothing(t *testing.T) {
	c := New(t.TempDir())
	boom := errors.New("boom")
	_, err := c.Ensure(context.Background(), "k", func(tmp string) error {
		os.WriteFile(filepath.Join(tmp, "partial"), []byte("x"), 0o644)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if _, ok := c.Lookup("k"); ok {
		t.Fatal("a failed build left an entry")
	}
	ents, _ := os.ReadDir(c.Dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary directory %s left behind", e.Name())
		}
	}
	// The next caller builds again.
	called := false
	if _, err := c.Ensure(context.Background(), "k", func(string) error { called = true; return nil }); err != nil || !called {
		t.Fatalf("second Ensure: called=%v err=%v", called, err)
	}
}

func TestEnsureRemovesStaleTemporaries(t *testing.T) {
	c := New(t.TempDir())
	stale := filepath.Join(c.Dir, ".tmp-k-12345")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ensure(context.Background(), "k", func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale temporary directory still there: %v", err)
	}
}

func TestEnsureWaitHonoursContext(t *testing.T) {
	c := New(t.TempDir())
	started := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := c.Ensure(context.Background(), "slow", func(string) error {
			close(started)
			<-release
			return nil
		})
		done <- err
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Ensure(ctx, "slow", func(string) error { return errors.New("second builder ran") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting caller: error %v, want deadline exceeded", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestInvalidKeys(t *testing.T) {
	c := New(t.TempDir())
	for _, key := range []string{"", "/abs", "a/../b", "..", "a//b", ".hidden", "x.lock", "a/./b"} {
		if _, err := c.Ensure(context.Background(), key, func(string) error { return nil }); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
}

func TestDefaultDir(t *testing.T) {
	tests := []struct {
		cache, xdg, home, want string
	}{
		{"/c", "/x", "/h", "/c"},
		{"", "/x", "/h", "/x/paddock"},
		{"", "relative", "/h", "/h/.cache/paddock"},
		{"", "", "/h", "/h/.cache/paddock"},
	}
	for _, tt := range tests {
		t.Setenv(EnvDir, tt.cache)
		t.Setenv("XDG_CACHE_HOME", tt.xdg)
		t.Setenv("HOME", tt.home)
		got, err := DefaultDir()
		if err != nil || got != tt.want {
			t.Errorf("DefaultDir(%+v) = %q, %v; want %q", tt, got, err, tt.want)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFileAtomic(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := WriteAtomic(p, 0o600, func(f *os.File) error {
		f.WriteString("partial")
		return errors.New("fail")
	})
	if err == nil {
		t.Fatal("failing write reported success")
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "one" || fi.Mode().Perm() != 0o600 {
		t.Errorf("after failed rewrite: %q %v, want the first contents, 0600", b, fi.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestPrune(t *testing.T) {
	c := New(t.TempDir())
	ctx := context.Background()
	for _, k := range []string{"bin/paddock-old", "bin/paddock-new", "bin/other-old"} {
		if _, err := c.Ensure(ctx, k, func(string) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-48 * time.Hour)
	for _, k := range []string{"bin/paddock-old", "bin/other-old"} {
		if err := os.Chtimes(c.Path(k), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Prune("bin", "paddock-", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]bool{"bin/paddock-old": false, "bin/paddock-new": true, "bin/other-old": true} {
		if _, ok := c.Lookup(k); ok != want {
			t.Errorf("%s present=%v, want %v", k, ok, want)
		}
	}
	// Touch keeps an entry.
	os.Chtimes(c.Path("bin/paddock-new"), old, old)
	c.Touch("bin/paddock-new")
	if err := c.Prune("bin", "paddock-", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Lookup("bin/paddock-new"); !ok {
		t.Error("a touched entry was pruned")
	}
}
