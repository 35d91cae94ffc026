package configs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"
)

// The guest's first-boot identity: a VM with cloud_init gets a cloud-init
// NoCloud seed volume that creates its user with its SSH keys and passes
// the user's own cloud-config on (docs/yaml.md, "First boot").

// Limits of the first-boot fields.
const (
	// MaxUserLen is the longest guest user name (useradd's limit).
	MaxUserLen = 32
	// MaxSSHKeys bounds ssh_keys, and MaxKeyFileSize one key file.
	MaxSSHKeys     = 64
	MaxKeyFileSize = 64 * KiB
	// DefaultGuestUser is the guest user when the invoking user's name
	// cannot be one (root, or a name the guest would refuse).
	DefaultGuestUser = "paddock"
	// CloudConfigHeader starts every cloud-config document.
	CloudConfigHeader = "#cloud-config"
)

// validUser matches a portable Linux user name (useradd's default rule).
var validUser = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)

// sshKeyPrefixes start the algorithm names of SSH public keys: an
// ssh_keys entry starting with one is a key, anything else a file.
var sshKeyPrefixes = []string{"ssh-", "ecdsa-", "sk-"}

// IsSSHKeyEntry reports whether an ssh_keys entry is a key written out
// (else it is the path of a public key file).
func IsSSHKeyEntry(s string) bool {
	for _, p := range sshKeyPrefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// sshKeys decodes the ssh_keys list: each entry a public key, or the path
// of a public key file, resolved like kernel.
func (d *decoder) sshKeys(field string, v *yaml.Node) []string {
	if v.Kind != yaml.SequenceNode {
		d.errorf(v, field, "must be a list of SSH public keys or public key files, such as [~/.ssh/id_ed25519.pub], got %s", describe(v))
		return nil
	}
	var keys []string
	for i, item := range v.Content {
		item = deref(item)
		f := fmt.Sprintf("%s[%d]", field, i)
		d.src.fields[f] = pos{item.Line, item.Column}
		s, ok := d.scalar(f, item, "an SSH public key or the path of one")
		switch {
		case !ok:
		case IsSSHKeyEntry(s):
			keys = append(keys, strings.TrimSpace(s))
		default:
			keys = append(keys, d.path(f, item))
		}
	}
	return keys
}

// fillCloudInitDefaults turns cloud_init on for a VM that sets a
// first-boot field or is made from a template (whose guest runs
// cloud-init) without saying, and gives such a VM its user.
func (vm *VM) fillCloudInitDefaults() {
	if !vm.CloudInit && !vm.written("cloud_init") && (vm.From != "" || vm.User != "" || len(vm.SSHKeys) > 0 || vm.UserData != "") {
		vm.CloudInit = true
	}
	if vm.CloudInit && vm.User == "" && !vm.written("user") {
		vm.User = DefaultUser()
	}
}

// DefaultUser is the guest user of a VM whose user field is left out:
// the name of the user who runs paddock (under sudo, the one who ran
// sudo), or DefaultGuestUser when that is root or not a name a guest
// accepts.
func DefaultUser() string {
	name := os.Getenv("SUDO_USER")
	if name == "" || name == "root" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		} else {
			name = os.Getenv("USER")
		}
	}
	if name == "root" || checkUser(name) != nil {
		return DefaultGuestUser
	}
	return name
}

// checkUser checks a guest user name.
func checkUser(name string) error {
	switch {
	case name == "":
		return errors.New("must be a user name")
	case name == "root":
		return errors.New("must not be root: cloud-init keeps root's SSH login off; name a user, which gets sudo")
	case len(name) > MaxUserLen:
		return fmt.Errorf("must be at most %d characters, got %d", MaxUserLen, len(name))
	case !validUser.MatchString(name):
		return fmt.Errorf("must be a user name (lowercase letters, digits, '_' and '-', not starting with a digit or '-'), got %s", quote(name))
	}
	return nil
}

// cloudInit checks the first-boot fields' values.
func (c *checker) cloudInit() {
	vm := c.vm
	if !vm.CloudInit {
		for _, f := range []struct {
			name string
			set  bool
		}{{"user", vm.User != ""}, {"ssh_keys", len(vm.SSHKeys) > 0}, {"user_data", vm.UserData != ""}} {
			if f.set {
				c.add(f.name, "is set but cloud_init is false: the guest only gets it through cloud-init's seed; set cloud_init: true or leave %s out", f.name)
			}
		}
		return
	}
	if err := checkUser(vm.User); err != nil {
		c.add("user", "%w", err)
	}
	if len(vm.SSHKeys) > MaxSSHKeys {
		c.add("ssh_keys", "has %d entries; at most %d", len(vm.SSHKeys), MaxSSHKeys)
	}
	for i, k := range vm.SSHKeys {
		if IsSSHKeyEntry(k) {
			if err := checkAuthorizedKey(k); err != nil {
				c.add(fmt.Sprintf("ssh_keys[%d]", i), "%w", err)
			}
		}
	}
	if vm.UserData != "" {
		if err := CheckUserData(vm.UserData); err != nil {
			c.add("user_data", "%w", err)
		}
	}
}

// checkAuthorizedKey checks one public key line: a key ssh accepts, with
// an optional comment, and nothing else.
func checkAuthorizedKey(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return errors.New("must be one key on one line")
	}
	_, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return fmt.Errorf("is not an SSH public key (TYPE BASE64 [COMMENT], as in a .pub file): %s", quote(line))
	}
	if len(rest) > 0 {
		return errors.New("must be one key on one line")
	}
	return nil
}

// cloudInitFiles checks the key files ssh_keys names.
func (c *checker) cloudInitFiles() {
	for i, k := range c.vm.SSHKeys {
		f := fmt.Sprintf("ssh_keys[%d]", i)
		if !c.vm.CloudInit || IsSSHKeyEntry(k) || c.skip(f) {
			continue
		}
		if _, err := ReadKeyFile(k); err != nil {
			c.add(f, "%w", err)
		}
	}
}

// ReadKeyFile returns the public keys in a key file: a .pub file, or
// several keys one a line as in authorized_keys (blank lines and #
// comments skipped).
func ReadKeyFile(path string) ([]string, error) {
	f, size, err := openRegular(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	if size > int64(MaxKeyFileSize) {
		return nil, fmt.Errorf("%s is %s, too large for a public key file (at most %s)", path, ByteSize(size).Approx(), ByteSize(MaxKeyFileSize))
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(MaxKeyFileSize)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, pathErr(err))
	}
	if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		return nil, fmt.Errorf("%s is a private key: give its public key (%s.pub)", path, path)
	}
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := checkAuthorizedKey(line); err != nil {
			return nil, fmt.Errorf("%s: line %d %w", path, n, err)
		}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no SSH public key", path)
	}
	return keys, nil
}

// AuthorizedKeys returns the public keys ssh_keys gives the guest user:
// the keys written out and those of the key files, in order, each once.
// Precondition: vm validated.
func (vm *VM) AuthorizedKeys() ([]string, error) {
	var keys []string
	seen := map[string]bool{}
	for i, k := range vm.SSHKeys {
		lines := []string{k}
		if !IsSSHKeyEntry(k) {
			var err error
			if lines, err = ReadKeyFile(k); err != nil {
				return nil, vm.Errorf(fmt.Sprintf("ssh_keys[%d]", i), "%w", err)
			}
		}
		for _, l := range lines {
			if !seen[l] {
				seen[l] = true
				keys = append(keys, l)
			}
		}
	}
	return keys, nil
}

// CheckUserData checks user_data: a cloud-config document, that is YAML
// whose first line is #cloud-config and whose content is a mapping (or
// empty). Other user-data formats (scripts, MIME, #include) are not
// accepted: paddock combines the user's cloud-config with its own.
func CheckUserData(s string) error {
	first, _, _ := strings.Cut(s, "\n")
	if strings.TrimRight(first, " \t\r") != CloudConfigHeader {
		return fmt.Errorf("must be a cloud-config document, whose first line is %s; got %s", CloudConfigHeader, quote(first))
	}
	dec := yaml.NewDecoder(strings.NewReader(s))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // only the header and comments
		}
		return fmt.Errorf("is not valid YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("must be one YAML document: remove the --- separators")
	}
	if len(doc.Content) == 1 && !isNull(doc.Content[0]) && doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("must be a mapping of cloud-config keys such as {packages: [nginx]}, got %s", describe(doc.Content[0]))
	}
	return nil
}
