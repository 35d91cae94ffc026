package configs

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// libvirtDrivers are the hypervisor drivers a libvirt URI can name
// (libvirt's docs/drivers.rst and uri.rst): the scheme's part before "+".
func libvirtDrivers() []string {
	return []string{"bhyve", "ch", "esx", "gsx", "hyperv", "libxl", "lxc", "openvz", "parallels", "qemu", "test", "vbox", "vmwarefusion", "vmwareplayer", "vmwarews", "vpx", "vz", "xen"}
}

// libvirtTransports are the transports a libvirt URI can name after "+".
func libvirtTransports() []string {
	return []string{"unix", "ssh", "libssh", "libssh2", "tcp", "tls", "ext"}
}

// libvirtURIForm is how a libvirt URI is written, for messages.
const libvirtURIForm = "driver[+transport]://[user@][host][:port]/path, such as qemu:///system or qemu+ssh://user@host/system"

// CheckLibvirtURI checks the form of a libvirt connection URI,
// driver[+transport]://[user@][host][:port]/path[?params], without
// connecting: a driver libvirt has, a transport it knows, a port that is
// a number and a path.
func CheckLibvirtURI(s string) error {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok || scheme == "" {
		return fmt.Errorf("must be a libvirt URI, %s; got %s", libvirtURIForm, quote(s))
	}
	driver, transport, hasTransport := strings.Cut(scheme, "+")
	if !slices.Contains(libvirtDrivers(), driver) {
		hint := "libvirt's drivers are " + strings.Join(libvirtDrivers(), ", ")
		if meant := closest(driver, libvirtDrivers()); meant != "" {
			hint = fmt.Sprintf("did you mean %q?", meant)
		}
		return fmt.Errorf("%s: unknown libvirt driver %s (%s)", quote(s), quote(driver), hint)
	}
	if hasTransport && !slices.Contains(libvirtTransports(), transport) {
		return fmt.Errorf("%s: unknown transport %s: want %s", quote(s), quote(transport), strings.Join(libvirtTransports(), ", "))
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URI is quoted already
		}
		return fmt.Errorf("%s is not a URI: %w", quote(s), err)
	}
	if u.Path == "" || u.Path == "/" {
		return fmt.Errorf("%s has no path, such as /system or /session", quote(s))
	}
	return nil
}

// libvirt checks the libvirt section, and what a libvirt VM cannot have.
func (c *checker) libvirt() {
	vm := c.vm
	l := vm.Libvirt
	if l.URI != "" {
		if err := CheckLibvirtURI(l.URI); err != nil {
			c.add("libvirt.uri", "%w", err)
		}
	}
	switch {
	case l.Host == "":
	case l.URI != "":
		c.add("libvirt.host", "and libvirt.uri are both set: name a host paddock knows (paddock host ls) or give a URI, not both")
	case l.Host != LibvirtAutoHost && !validName(l.Host):
		c.add("libvirt.host", "must be a host name (paddock host ls lists them) or %s, got %s", LibvirtAutoHost, quote(l.Host))
	}
	switch l.Type {
	case "", LibvirtAuto, LibvirtKVM, LibvirtQEMU:
	default:
		c.add("libvirt.type", "must be one of %s, %s (hardware virtualization), %s (TCG emulation); got %s", LibvirtAuto, LibvirtKVM, LibvirtQEMU, quote(l.Type))
	}
	if vm.Backend != BackendLibvirt {
		return
	}
	if vm.Restart != RestartNo && vm.Restart != "" {
		c.add("restart", "is %s, but libvirt boots no domain again by itself: a libvirt VM has restart: %s only (leave restart out)", vm.Restart, RestartNo)
	}
	if vm.Console.Log != "" {
		c.add("console.log", "is set, but a libvirt VM's console is logged on its host (paddock logs shows it): leave console.log out")
	}
	for i, d := range vm.Disks {
		if d.Limits != nil {
			c.add(fmt.Sprintf("disks[%d].limits", i), "are not supported by the libvirt backend yet: leave them out, or use backend: native")
		}
	}
	for i, n := range vm.NICs {
		if n.Limits != nil {
			c.add(fmt.Sprintf("nics[%d].limits", i), "are not supported by the libvirt backend yet: leave them out, or use backend: native")
		}
	}
}
