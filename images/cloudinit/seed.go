// Package cloudinit makes a VM's cloud-init NoCloud seed: the meta-data,
// user-data and network-config files cloud-init reads on the guest's first
// boot, on a read-only ISO 9660 volume labelled "cidata" — the convention
// Lima, Multipass and virt-install use. cloud-init's ds-identify finds the
// volume by its label; the guest needs no kernel command line for it.
//
// The meta-data names the instance (the VM's UUID, so cloud-init runs its
// once-per-instance steps once, and again in a clone, which has a new
// UUID) and its hostname. The user-data creates the guest user with sudo
// and the authorized SSH keys; a user's own cloud-config is combined with
// it as cloud-init combines parts, in a MIME multipart document. The
// network-config (version 2) gives every NIC, matched by its MAC address,
// a stable name (eth0, eth1, ...) and DHCP.
//
// Reference: cloud-init's NoCloud datasource, user-data formats,
// merging, and network configuration version 2.
package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Seed is what the seed tells cloud-init about one VM.
type Seed struct {
	// InstanceID is cloud-init's instance-id: the VM's UUID.
	InstanceID string
	// Hostname is the guest's hostname: the VM's name.
	Hostname string
	// User is the guest user created with sudo rights and AuthorizedKeys.
	User string
	// AuthorizedKeys are SSH public keys, one per entry.
	AuthorizedKeys []string
	// UserData, if set, is the user's own cloud-config document
	// ("#cloud-config" first), combined with paddock's.
	UserData string
	// MACs are the NICs' addresses, in the order the guest sees them.
	MACs []string
}

// File names on the seed volume, as NoCloud reads them.
const (
	MetaDataFile      = "meta-data"
	UserDataFile      = "user-data"
	NetworkConfigFile = "network-config"
	// Label is the volume label NoCloud looks for.
	Label = "cidata"
)

// Header starts a cloud-config document.
const Header = "#cloud-config"

// userMerge is how paddock's part of the user-data merges into the user's
// (cloud-init's merging syntax): lists are appended to (so paddock's user
// joins the user's own users, runcmd and the like keep theirs), keys the
// user set keep the user's value, and lists inside mappings are merged
// the same way.
const userMerge = "list(append)+dict(no_replace,recurse_list)+str()"

// Boundary separates the parts of a multipart user-data; a fixed one keeps
// the seed the same for the same VM. check refuses user data that contains it.
const Boundary = "==paddock-cloud-init-part=="

// check checks the seed's fields.
func (s *Seed) check() error {
	var errs []error
	if s.InstanceID == "" {
		errs = append(errs, errors.New("cloudinit: no instance-id"))
	}
	if s.Hostname == "" || strings.ContainsAny(s.Hostname, " \t\r\n") {
		errs = append(errs, fmt.Errorf("cloudinit: hostname %q: must be a name", s.Hostname))
	}
	if s.User == "" {
		errs = append(errs, errors.New("cloudinit: no user"))
	}
	for i, k := range s.AuthorizedKeys {
		if strings.ContainsAny(k, "\r\n") {
			errs = append(errs, fmt.Errorf("cloudinit: SSH key %d: must be one line", i))
		}
	}
	if s.UserData != "" {
		first, _, _ := strings.Cut(s.UserData, "\n")
		if strings.TrimRight(first, " \t\r") != Header {
			errs = append(errs, fmt.Errorf("cloudinit: user data must start with %s", Header))
		}
		if strings.Contains(s.UserData, Boundary) {
			errs = append(errs, fmt.Errorf("cloudinit: user data must not contain %q", Boundary))
		}
	}
	return errors.Join(errs...)
}

// metaData is the meta-data file.
type metaData struct {
	InstanceID    string `yaml:"instance-id"`
	LocalHostname string `yaml:"local-hostname"`
}

// MetaData returns the meta-data file: instance-id and local-hostname.
func (s *Seed) MetaData() ([]byte, error) {
	return marshal(metaData{InstanceID: s.InstanceID, LocalHostname: s.Hostname})
}

// cloudConfig is paddock's own cloud-config.
type cloudConfig struct {
	Users []user `yaml:"users"`
}

// user is one entry of cloud-config's users list.
type user struct {
	Name              string   `yaml:"name"`
	Shell             string   `yaml:"shell"`
	Sudo              string   `yaml:"sudo"`
	LockPasswd        bool     `yaml:"lock_passwd"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
}

// PaddockConfig returns paddock's own cloud-config document: the user,
// with a login shell, passwordless sudo, no password and the keys.
func (s *Seed) PaddockConfig() ([]byte, error) {
	body, err := marshal(cloudConfig{Users: []user{{
		Name:              s.User,
		Shell:             "/bin/bash",
		Sudo:              "ALL=(ALL) NOPASSWD:ALL",
		LockPasswd:        true,
		SSHAuthorizedKeys: s.AuthorizedKeys,
	}}})
	if err != nil {
		return nil, err
	}
	return append([]byte(Header+"\n"), body...), nil
}

// UserDataFile returns the user-data file: paddock's cloud-config alone,
// or, with the user's own, a MIME multipart document of the user's part
// and then paddock's, which cloud-init merges by the Merge-Type header of
// paddock's part (userMerge).
func (s *Seed) UserDataFile() ([]byte, error) {
	own, err := s.PaddockConfig()
	if err != nil {
		return nil, err
	}
	if s.UserData == "" {
		return own, nil
	}
	var buf bytes.Buffer
	buf.WriteString("Content-Type: multipart/mixed; boundary=\"" + Boundary + "\"\nMIME-Version: 1.0\n\n")
	w := multipart.NewWriter(&buf)
	if err := w.SetBoundary(Boundary); err != nil {
		return nil, fmt.Errorf("cloudinit: %w", err)
	}
	parts := []struct {
		name, merge string
		body        []byte
	}{
		{"user-data.yaml", "", []byte(s.UserData)},
		{"paddock.yaml", userMerge, own},
	}
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", `text/cloud-config; charset="utf-8"`)
		h.Set("Content-Disposition", `attachment; filename="`+p.name+`"`)
		if p.merge != "" {
			h.Set("Merge-Type", p.merge)
		}
		pw, err := w.CreatePart(h)
		if err != nil {
			return nil, fmt.Errorf("cloudinit: %w", err)
		}
		pw.Write(p.body)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("cloudinit: %w", err)
	}
	return buf.Bytes(), nil
}

// networkConfig is a version 2 network configuration.
type networkConfig struct {
	Version   int                 `yaml:"version"`
	Ethernets map[string]ethernet `yaml:"ethernets"`
}

// ethernet is one interface of a version 2 configuration.
type ethernet struct {
	Match   match  `yaml:"match"`
	SetName string `yaml:"set-name"`
	DHCP4   bool   `yaml:"dhcp4"`
}

type match struct {
	MACAddress string `yaml:"macaddress"`
}

// InterfaceName is the name the guest gives its i-th NIC (network-config's
// set-name): eth0, eth1, ...
func InterfaceName(i int) string { return fmt.Sprintf("eth%d", i) }

// NetworkConfig returns the network-config file: each NIC, matched by its
// MAC address, named InterfaceName(i) and configured by DHCP.
func (s *Seed) NetworkConfig() ([]byte, error) {
	nc := networkConfig{Version: 2, Ethernets: map[string]ethernet{}}
	for i, mac := range s.MACs {
		name := InterfaceName(i)
		nc.Ethernets[name] = ethernet{Match: match{MACAddress: strings.ToLower(mac)}, SetName: name, DHCP4: true}
	}
	return marshal(nc)
}

// Files returns the seed's files by name.
func (s *Seed) Files() (map[string][]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for name, f := range map[string]func() ([]byte, error){
		MetaDataFile:      s.MetaData,
		UserDataFile:      s.UserDataFile,
		NetworkConfigFile: s.NetworkConfig,
	} {
		b, err := f()
		if err != nil {
			return nil, err
		}
		files[name] = b
	}
	return files, nil
}

// marshal encodes v as YAML.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("cloudinit: encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("cloudinit: encode: %w", err)
	}
	return buf.Bytes(), nil
}
