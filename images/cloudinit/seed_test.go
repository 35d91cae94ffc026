package cloudinit

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	testKey  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbG3Sx5bP9n4yOW0m1r7g0bI0kZ5kH6m0C2q7lJ9hFz alice@laptop"
	testKey2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN0dWqX3f8bV4b6JZ1l0x9y8kqj3k2c1f3f0y7m9a0Qb paddock"
)

func testSeed() *Seed {
	return &Seed{
		InstanceID:     "6f1e6d43-9a61-4e07-9f43-4c1f6a0cfa3e",
		Hostname:       "web-1",
		User:           "alice",
		AuthorizedKeys: []string{testKey2, testKey},
		MACs:           []string{"02:AA:00:00:00:01", "52:54:00:12:34:56"},
	}
}

// unmarshal decodes YAML strictly into v.
func unmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v in:\n%s", err, data)
	}
}

func TestMetaData(t *testing.T) {
	b, err := testSeed().MetaData()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	unmarshal(t, b, &m)
	if len(m) != 2 || m["instance-id"] != "6f1e6d43-9a61-4e07-9f43-4c1f6a0cfa3e" || m["local-hostname"] != "web-1" {
		t.Errorf("meta-data %v:\n%s", m, b)
	}
}

// checkPaddockConfig checks paddock's own cloud-config document.
func checkPaddockConfig(t *testing.T, b []byte) {
	t.Helper()
	if !bytes.HasPrefix(b, []byte("#cloud-config\n")) {
		t.Fatalf("paddock's cloud-config does not start with #cloud-config:\n%s", b)
	}
	var cc struct {
		Users []struct {
			Name              string   `yaml:"name"`
			Shell             string   `yaml:"shell"`
			Sudo              string   `yaml:"sudo"`
			LockPasswd        bool     `yaml:"lock_passwd"`
			SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys"`
		} `yaml:"users"`
	}
	unmarshal(t, b, &cc)
	if len(cc.Users) != 1 {
		t.Fatalf("users %+v", cc.Users)
	}
	u := cc.Users[0]
	if u.Name != "alice" || u.Shell != "/bin/bash" || u.Sudo != "ALL=(ALL) NOPASSWD:ALL" || !u.LockPasswd {
		t.Errorf("user %+v", u)
	}
	if strings.Join(u.SSHAuthorizedKeys, "\n") != testKey2+"\n"+testKey {
		t.Errorf("keys %q", u.SSHAuthorizedKeys)
	}
}

func TestUserDataAlone(t *testing.T) {
	b, err := testSeed().UserDataFile()
	if err != nil {
		t.Fatal(err)
	}
	checkPaddockConfig(t, b)
}

// TestUserDataMultipart checks the user's cloud-config and paddock's as
// two parts of a MIME multipart document, in the order and with the
// headers cloud-init's merging needs.
func TestUserDataMultipart(t *testing.T) {
	s := testSeed()
	s.UserData = "#cloud-config\npackages: [nginx]\nruncmd:\n  - echo hi > /tmp/hi\n"
	b, err := s.UserDataFile()
	if err != nil {
		t.Fatal(err)
	}
	header, body, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		t.Fatalf("no header:\n%s", b)
	}
	mt, params, err := mime.ParseMediaType(strings.TrimPrefix(strings.SplitN(string(header), "\n", 2)[0], "Content-Type: "))
	if err != nil || mt != "multipart/mixed" || params["boundary"] != Boundary || !strings.Contains(string(header), "MIME-Version: 1.0") {
		t.Fatalf("header %q: %s %v %v", header, mt, params, err)
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var parts []*multipart.Part
	var bodies [][]byte
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(p)
		parts = append(parts, p)
		bodies = append(bodies, data)
	}
	if len(parts) != 2 {
		t.Fatalf("%d parts, want 2", len(parts))
	}
	for i, p := range parts {
		if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/cloud-config") {
			t.Errorf("part %d: Content-Type %q", i, ct)
		}
	}
	if string(bodies[0]) != s.UserData || parts[0].Header.Get("Merge-Type") != "" {
		t.Errorf("first part (the user's): %q, Merge-Type %q", bodies[0], parts[0].Header.Get("Merge-Type"))
	}
	if got := parts[1].Header.Get("Merge-Type"); got != "list(append)+dict(no_replace,recurse_list)+str()" {
		t.Errorf("paddock's part: Merge-Type %q", got)
	}
	checkPaddockConfig(t, bodies[1])
}

func TestNetworkConfig(t *testing.T) {
	b, err := testSeed().NetworkConfig()
	if err != nil {
		t.Fatal(err)
	}
	var nc struct {
		Version   int `yaml:"version"`
		Ethernets map[string]struct {
			Match struct {
				MACAddress string `yaml:"macaddress"`
			} `yaml:"match"`
			SetName string `yaml:"set-name"`
			DHCP4   bool   `yaml:"dhcp4"`
		} `yaml:"ethernets"`
	}
	unmarshal(t, b, &nc)
	if nc.Version != 2 || len(nc.Ethernets) != 2 {
		t.Fatalf("network-config %+v:\n%s", nc, b)
	}
	for name, mac := range map[string]string{"eth0": "02:aa:00:00:00:01", "eth1": "52:54:00:12:34:56"} {
		e := nc.Ethernets[name]
		if e.Match.MACAddress != mac || e.SetName != name || !e.DHCP4 {
			t.Errorf("%s: %+v; want MAC %s, set-name %s, DHCP", name, e, mac, name)
		}
	}
	s := testSeed()
	s.MACs = nil
	if b, err := s.NetworkConfig(); err != nil || string(b) != "version: 2\nethernets: {}\n" {
		t.Errorf("no NICs: %q, %v", b, err)
	}
}

// TestSeedQuoting checks values YAML would read as something else come
// out as the strings they are.
func TestSeedQuoting(t *testing.T) {
	s := testSeed()
	s.Hostname, s.User = "123", "yes"
	files, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	unmarshal(t, files[MetaDataFile], &m)
	if m["local-hostname"] != "123" {
		t.Errorf("hostname read back as %#v", m["local-hostname"])
	}
	var cc map[string][]map[string]any
	unmarshal(t, files[UserDataFile], &cc)
	if cc["users"][0]["name"] != "yes" {
		t.Errorf("user read back as %#v", cc["users"][0]["name"])
	}
}

func TestSeedErrors(t *testing.T) {
	for _, tc := range []struct {
		change func(*Seed)
		want   string
	}{
		{func(s *Seed) { s.InstanceID = "" }, "no instance-id"},
		{func(s *Seed) { s.Hostname = "a b" }, `hostname "a b"`},
		{func(s *Seed) { s.User = "" }, "no user"},
		{func(s *Seed) { s.AuthorizedKeys = []string{"ssh-ed25519 AAAA\nssh-rsa B"} }, "SSH key 0: must be one line"},
		{func(s *Seed) { s.UserData = "packages: [a]\n" }, "must start with #cloud-config"},
		{func(s *Seed) { s.UserData = "#cloud-config\n# " + Boundary + "\n" }, "must not contain"},
	} {
		s := testSeed()
		tc.change(s)
		if _, err := s.Files(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Files() = %v, want %q", err, tc.want)
		}
	}
}
