package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/guest/jail"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// isolationLayers are the layers doctor reports, in order.
var isolationLayers = []string{"jail", "namespaces", "cgroup", "seccomp", "no_new_privs", "user_namespaces", "tun", "bridge", "nftables"}

// doctorIsolationJSON reads the output of doctor --json and returns its
// isolation report, with its layers checked.
func doctorIsolationJSON(t *testing.T, out string) doctorIsolation {
	t.Helper()
	var rep doctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	r := rep.Isolation
	var names []string
	for _, l := range r.Layers {
		names = append(names, l.Name)
		if l.Detail == "" {
			t.Errorf("layer %s has no detail", l.Name)
		}
	}
	if !slices.Equal(names, isolationLayers) {
		t.Errorf("layers %v, want %v", names, isolationLayers)
	}
	return r
}

// layer returns the layer called name.
func layer(r doctorIsolation, name string) jail.Layer {
	for _, l := range r.Layers {
		if l.Name == name {
			return l
		}
	}
	return jail.Layer{}
}

// TestDoctorIsolation: doctor says which isolation layers VMMs get here:
// as root, jailed, with this host's cgroup version; complete exactly
// when every layer the jail uses is on. PADDOCK_NO_JAIL=1 turns the jail
// off, and doctor says so and why.
func TestDoctorIsolation(t *testing.T) {
	stdout, _, _ := runPaddock(t, "", "doctor", "--json")
	r := doctorIsolationJSON(t, stdout)
	if r.Jailed != (os.Geteuid() == 0) || layer(r, "jail").Active != r.Jailed {
		t.Errorf("jailed %v, jail layer %+v, as uid %d", r.Jailed, layer(r, "jail"), os.Geteuid())
	}
	complete := true
	for _, l := range r.Layers {
		if l.Name != "user_namespaces" {
			complete = complete && l.Active
		}
	}
	if r.Complete != complete {
		t.Errorf("complete %v, but the layers say %v: %+v", r.Complete, complete, r.Layers)
	}
	v, err := jail.CgroupVersion()
	cg := layer(r, "cgroup")
	switch {
	case err != nil && cg.Active:
		t.Errorf("cgroup layer on without a cgroup (%v): %+v", err, cg)
	case err == nil && !strings.Contains(cg.Detail, []string{"", "cgroup v1", "cgroup v2"}[v]):
		t.Errorf("cgroup layer %+v on a cgroup v%d host", cg, v)
	}
	text, _, _ := runPaddock(t, "", "doctor")
	for _, l := range r.Layers {
		if !strings.Contains(text, l.Name) || !strings.Contains(text, l.Detail) {
			t.Errorf("doctor's text has no line for %s: %q", l.Name, l.Detail)
		}
	}

	t.Setenv(jail.NoJailEnv, "1")
	stdout, _, _ = runPaddock(t, "", "doctor", "--json")
	r = doctorIsolationJSON(t, stdout)
	if r.Jailed || r.Complete || layer(r, "jail").Active || layer(r, "seccomp").Active {
		t.Errorf("with %s=1: %+v", jail.NoJailEnv, r)
	}
	if os.Geteuid() == 0 && !strings.Contains(layer(r, "jail").Detail, jail.NoJailEnv+"=1") {
		t.Errorf("with %s=1 the jail layer does not say why it is off: %+v", jail.NoJailEnv, layer(r, "jail"))
	}
	if text, _, _ := runPaddock(t, "", "doctor"); !strings.Contains(text, "isolation: VMMs run unjailed") {
		t.Errorf("with %s=1 doctor does not say VMMs run unjailed:\n%s", jail.NoJailEnv, text)
	}
}

// TestDoctorIsolationUnprivileged: run by a user that is not root,
// doctor says VMMs run unjailed, and why.
func TestDoctorIsolationUnprivileged(t *testing.T) {
	testenv.RequireRoot(t, "the test runs doctor as another user")
	cmd := exec.Command(binaryForAll(t), "doctor", "--json")
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := cmd.Output() // its status is the KVM part's
	r := doctorIsolationJSON(t, string(out))
	if r.Jailed || r.Complete || !strings.Contains(layer(r, "jail").Detail, "runs as uid 65534, not root") {
		t.Errorf("doctor as uid 65534: %+v", r)
	}
}
