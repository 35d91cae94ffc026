package configs

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestParsePort(t *testing.T) {
	for in, want := range map[string]string{
		"8080:80":                "127.0.0.1:8080:80/tcp",
		"8080:80/udp":            "127.0.0.1:8080:80/udp",
		"0.0.0.0:2222:22":        "0.0.0.0:2222:22/tcp",
		"192.0.2.1:5353:53/udp":  "192.0.2.1:5353:53/udp",
		"65535:1":                "127.0.0.1:65535:1/tcp",
		"80":                     "write HOSTPORT:GUESTPORT or HOSTIP:HOSTPORT:GUESTPORT",
		"8080:80/sctp":           "the protocol must be tcp or udp",
		"0:80":                   `"0" is not a port (1 to 65535)`,
		"8080:65536":             `"65536" is not a port (1 to 65535)`,
		"localhost:8080:80":      `"localhost" is not an IPv4 address`,
		"[::1]:8080:80":          "write HOSTPORT:GUESTPORT or HOSTIP:HOSTPORT:GUESTPORT",
		"1.2.3.4:5:6:7":          "write HOSTPORT:GUESTPORT or HOSTIP:HOSTPORT:GUESTPORT",
		"8080:http":              `"http" is not a port (1 to 65535)`,
		"127.0.0.1:8080:80/tcp/": "the protocol must be tcp or udp",
	} {
		p, err := ParsePort(in)
		got := p.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) {
			t.Errorf("ParsePort(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestPorts checks ports and nics[].network in files: decoding, the
// rules between them, and a host port that a program holds.
func TestPorts(t *testing.T) {
	dir := testTree(t)
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	const ok = "name: hello\nkernel: vmlinuz\nnics: [{network: default}]\n"
	const f = "$DIR/hello.yaml"
	// Only the last case checks host ports (the others would depend on
	// what else runs on this host).
	tests := []struct{ name, yaml, want string }{
		{"valid", ok + "ports: ['18080:80', '0.0.0.0:18081:80', 18082:53/udp]\n", ""},
		{"not a list", ok + "ports: '8080:80'\n", f + `:4:8: ports: must be a list of port forwards such as ["8080:80"], got "8080:80"`},
		{"bad entry", ok + "ports: ['8080']\n", f + `:4:9: ports[0]: "8080" is not a port forward such as 8080:80 or 127.0.0.1:5353:53/udp: write HOSTPORT:GUESTPORT or HOSTIP:HOSTPORT:GUESTPORT`},
		{"no managed network", "name: hello\nkernel: vmlinuz\nports: ['18080:80']\n", f + ":3:8: ports: forwards to the VM's address on a managed network: give it a NIC with network (such as {network: default})"},
		{"twice", ok + "ports: ['18080:80', '0.0.0.0:18080:81']\n", f + ":4:21: ports[1]: host port 0.0.0.0:18080/tcp is already forwarded by ports[0]"},
		{"tcp and udp", ok + "ports: ['18080:80', '18080:80/udp']\n", ""},
		{"in use", ok + "ports: ['" + strconv.Itoa(busyPort) + ":80']\n", f + ":4:9: ports[0]: host port 127.0.0.1:" + strconv.Itoa(busyPort) + "/tcp is in use (by a program of this host, or a running VM's forward)"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host := Host{CheckPorts: i == len(tests)-1}
			if got := check(t, dir, tc.yaml, host); got != tc.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
	// Without CheckPorts (a VM that may run, holding its own ports) the
	// port is not looked at.
	if got := check(t, dir, tests[len(tests)-1].yaml, Host{}); got != "" {
		t.Errorf("without CheckPorts: %s", got)
	}
}
