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

// checkLibvirtURI checks the form of a libvirt connection URI,
// driver[+transport]://[user@][host][:port]/path[?params], without
// connecting: a driver libvirt has, a transport it knows, a port that is
// a number and a path.
func checkLibvirtURI(s string) error {
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
