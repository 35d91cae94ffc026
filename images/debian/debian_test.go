package debian

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/internal/testenv"
)

func TestFirstDependency(t *testing.T) {
	tests := []struct {
		depends, pkg, version string
	}{
		{"linux-image-6.1.0-56-amd64 (= 6.1.192-2)", "linux-image-6.1.0-56-amd64", "6.1.192-2"},
		{"linux-image-6.1.0-9-cloud-amd64 (>= 6.1), libc6", "linux-image-6.1.0-9-cloud-amd64", ""},
		{"a | b (= 2), c", "a", ""},
		{"libc6:amd64 (= 2.36)", "libc6", "2.36"},
		{"", "", ""},
		{"x (= 1", "x", ""},
	}
	for _, tt := range tests {
		if pkg, version := firstDependency(tt.depends); pkg != tt.pkg || version != tt.version {
			t.Errorf("firstDependency(%q) = %q, %q; want %q, %q", tt.depends, pkg, version, tt.pkg, tt.version)
		}
	}
}

func TestField(t *testing.T) {
	out := []byte("Package: busybox-static\nVersion: 1:1.35.0-4+deb12u1+b1\nDescription: Version: not this\n")
	if got := field(out, "Version"); got != "1:1.35.0-4+deb12u1+b1" {
		t.Errorf("Version = %q", got)
	}
	if got := field(out, "Size"); got != "" {
		t.Errorf("Size = %q, want empty", got)
	}
}

func TestKeyAndValidation(t *testing.T) {
	if got, want := Key("busybox-static", "1:1.35.0-4"), "debian/busybox-static_1%3a1.35.0-4"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
	names := map[string]bool{"linux-image-6.1.0-56-amd64": true, "g++": true, "a": false, "-x": false, "Foo": false, "a/b": false, "a b": false, "../x": false}
	for n, want := range names {
		if ValidName(n) != want {
			t.Errorf("ValidName(%q) = %v, want %v", n, !want, want)
		}
	}
	versions := map[string]bool{"6.1.192-2": true, "1:1.35.0-4+deb12u1+b1": true, "1.0~rc1": true, "": false, "x1": false, "1/2": false, "1 2": false}
	for v, want := range versions {
		if validVersion(v) != want {
			t.Errorf("validVersion(%q) = %v, want %v", v, !want, want)
		}
	}
	c := &Client{Cache: cache.New(t.TempDir())}
	if _, err := c.Fetch(context.Background(), "../etc", "1"); err == nil {
		t.Error("Fetch accepted a package name with a path")
	}
}

// TestNoApt runs with an empty PATH: resolution fails with an error that
// names the missing tool, unless a cached kernel can stand in.
func TestNoApt(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	c := &Client{Cache: cache.New(t.TempDir())}
	_, err := c.FetchKernel(context.Background(), KernelOptions{})
	if !errors.Is(err, ErrNoApt) || !strings.Contains(err.Error(), "apt-cache not found") {
		t.Fatalf("error %v, want one naming apt-cache", err)
	}

	// A kernel unpacked earlier is used offline.
	root := filepath.Join(c.Cache.Path(Key("linux-image-6.1.0-1-amd64", "6.1.1-1")), "root")
	for _, d := range []string{"boot", "lib/modules/6.1.0-1-amd64/kernel"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "boot/vmlinuz-6.1.0-1-amd64"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logged []string
	c.Logf = func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }
	k, err := c.FetchKernel(context.Background(), KernelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "6.1.0-1-amd64" || k.Version != "6.1.1-1" || k.Name != "linux-image-6.1.0-1-amd64" {
		t.Errorf("cached kernel %+v", k)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "using cached linux-image-6.1.0-1-amd64") {
		t.Errorf("log %q, want one line saying the cached kernel is used", logged)
	}
	// ...but not for another flavour.
	if _, err := c.FetchKernel(context.Background(), KernelOptions{Meta: "linux-image-cloud-amd64"}); err == nil {
		t.Error("a generic cached kernel stood in for the cloud flavour")
	}
}

func TestKernelFromRejectsNonKernelPackages(t *testing.T) {
	root := t.TempDir()
	_, err := kernelFrom(&Package{Name: "busybox-static", Version: "1", Root: root})
	if err == nil || !strings.Contains(err.Error(), "0 boot/vmlinuz-* files") {
		t.Fatalf("error %v", err)
	}
	os.MkdirAll(filepath.Join(root, "boot"), 0o755)
	os.WriteFile(filepath.Join(root, "boot/vmlinuz-6.1.0-9-amd64"), nil, 0o644)
	_, err = kernelFrom(&Package{Name: "x", Version: "1", Root: root})
	if err == nil || !strings.Contains(err.Error(), "modules of release 6.1.0-9-amd64") {
		t.Fatalf("error %v", err)
	}
}

func needApt(t *testing.T) {
	t.Helper()
	testenv.RequireTool(t, "apt-cache", "apt")
	testenv.RequireTool(t, "apt-get", "apt")
	testenv.RequireTool(t, "dpkg-deb", "dpkg")
}

// TestFetchKernel fetches the real linux-image-amd64 into the shared cache
// (once per version; later runs reuse it) from several goroutines.
func TestFetchKernel(t *testing.T) {
	needApt(t)
	c, err := cache.Default()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logged []string
	client := &Client{Cache: c, Logf: func(f string, a ...any) {
		mu.Lock()
		logged = append(logged, fmt.Sprintf(f, a...))
		mu.Unlock()
	}}
	ctx := context.Background()
	kernels := make([]*Kernel, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range kernels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kernels[i], errs[i] = client.FetchKernel(ctx, KernelOptions{})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	k := kernels[0]
	for _, other := range kernels[1:] {
		if *other != *k {
			t.Errorf("concurrent callers got %+v and %+v", k, other)
		}
	}
	downloads := 0
	for _, l := range logged {
		if strings.HasPrefix(l, "downloading") {
			downloads++
		}
	}
	if downloads > 1 {
		t.Errorf("downloaded %d times: %q", downloads, logged)
	}
	if !regexp.MustCompile(`^linux-image-\d+\.\d+\.\d+-\d+-amd64$`).MatchString(k.Name) {
		t.Errorf("package %q is not a versioned generic amd64 kernel", k.Name)
	}
	if k.Name != "linux-image-"+k.Release {
		t.Errorf("package %q does not match release %q", k.Name, k.Release)
	}
	head := make([]byte, 0x206)
	f, err := os.Open(k.BzImage)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	if string(head[0x202:0x206]) != "HdrS" {
		t.Errorf("%s has no bzImage header", k.BzImage)
	}
	for _, m := range []string{"kernel/arch/x86/kvm/kvm-amd.ko", "kernel/virt/lib/irqbypass.ko"} {
		if _, err := os.Stat(filepath.Join(k.ModulesDir, m)); err != nil {
			t.Errorf("module %s: %v", m, err)
		}
	}

	// The same version again comes from the cache.
	logged = nil
	again, err := client.FetchKernel(ctx, KernelOptions{Package: k.Name, Version: k.Version})
	if err != nil {
		t.Fatal(err)
	}
	if *again != *k || len(logged) != 0 {
		t.Errorf("pinned fetch of a cached version: %+v, log %q", again, logged)
	}
}

func TestBusybox(t *testing.T) {
	if _, err := os.Stat(HostBusybox); err != nil {
		needApt(t)
	}
	c, err := cache.Default()
	if err != nil {
		t.Fatal(err)
	}
	p, err := (&Client{Cache: c}).Busybox(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckStatic(p); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p, "--list").Output()
	if err != nil || !strings.Contains(string(out), "\ninsmod\n") {
		t.Errorf("%s --list: %v, insmod missing", p, err)
	}
}

func TestCheckStatic(t *testing.T) {
	sh := testenv.RequireTool(t, "sh", "dash")
	if err := CheckStatic(sh); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("CheckStatic(%s) = %v, want dynamically linked", sh, err)
	}
	notELF := filepath.Join(t.TempDir(), "script")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	if err := CheckStatic(notELF); err == nil || !strings.Contains(err.Error(), "not a usable ELF") {
		t.Errorf("CheckStatic(script) = %v", err)
	}
}
