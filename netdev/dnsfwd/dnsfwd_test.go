package dnsfwd_test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/netdev/dnsfwd"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

// The test binary plays the host's side in a namespace (a forwarder on
// the gateway address and, as the host's resolver, a name server on
// 127.0.0.53) when envChild is "host", and a TCP client when it is
// "tcp-client".
const envChild = "PADDOCK_DNSFWD_TEST"

var gateway = netip.MustParseAddr("10.77.0.1")

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "host":
		os.Exit(childHost(os.Getenv("RESOLV")))
	case "tcp-client":
		os.Exit(childTCPClient(os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

// childHost serves until its standard input closes.
func childHost(resolv string) int {
	upstream := &dns.Server{Addr: "127.0.0.53:53", Net: "udp", Handler: dns.HandlerFunc(answer)}
	upstreamTCP := &dns.Server{Addr: "127.0.0.53:53", Net: "tcp", Handler: dns.HandlerFunc(answer)}
	for _, s := range []*dns.Server{upstream, upstreamTCP} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := s.ListenAndServe(); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
		}()
		<-started
	}
	f, err := dnsfwd.Listen(dnsfwd.Config{
		Upstreams: dnsfwd.NewResolvers(resolv, gateway).Servers,
		Timeout:   500 * time.Millisecond,
		Logf:      func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
	}, gateway)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	go f.Serve()
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// answer is the host resolver: example.test is 192.0.2.7, big.test has
// 40 addresses (more than a 512-byte UDP answer holds), anything else
// does not exist.
func answer(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	switch {
	case q.Name == "example.test." && q.Qtype == dns.TypeA:
		rr, _ := dns.NewRR("example.test. 60 IN A 192.0.2.7")
		m.Answer = append(m.Answer, rr)
	case q.Name == "big.test." && q.Qtype == dns.TypeA:
		for i := range 40 {
			rr, _ := dns.NewRR(fmt.Sprintf("big.test. 60 IN A 192.0.2.%d", i+1))
			m.Answer = append(m.Answer, rr)
		}
	default:
		m.SetRcode(req, dns.RcodeNameError)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		m.Truncate(512)
	}
	w.WriteMsg(m)
}

// childTCPClient looks name up over TCP through the forwarder.
func childTCPClient(name string) int {
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	resp, _, err := c.Exchange(m, gateway.String()+":53")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println(dns.RcodeToString[resp.Rcode], len(resp.Answer))
	return 0
}

// TestForwarder resolves names from a guest namespace with busybox's
// nslookup (UDP) and a TCP client, through the forwarder on the bridge,
// to the host's resolver on 127.0.0.53 as resolv.conf lists it.
func TestForwarder(t *testing.T) {
	bb := testenv.RequireTool(t, "busybox", "busybox-static")
	host, guest := netnstest.New(t), netnstest.New(t)
	host.Bridge(t, "pd-test")
	host.IP(t, "addr", "add", gateway.String()+"/24", "dev", "pd-test")
	host.VethTo(t, guest, "vguest", "eth0", "pd-test")
	guest.IP(t, "addr", "add", "10.77.0.2/24", "dev", "eth0")

	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	write := func(s string) {
		t.Helper()
		// A new file, renamed into place, as resolvconf and NetworkManager do.
		if err := os.WriteFile(resolv+".new", []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(resolv+".new", resolv); err != nil {
			t.Fatal(err)
		}
	}
	// The gateway itself is left out (it would loop), a dead resolver is
	// tried first and skipped.
	write("nameserver 10.77.0.1\nnameserver 127.0.0.54\nnameserver 127.0.0.53\n")

	cmd := exec.Command("ip", "netns", "exec", host.Name, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=host", "RESOLV="+resolv)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
		t.Logf("forwarder's log:\n%s", stderr.String())
	}()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("host side: %q, %v", line, err)
	}

	lookup := func(name string) (string, error) {
		return guest.Try(bb, "nslookup", "-type=a", name, gateway.String())
	}
	if out, err := lookup("example.test"); err != nil || !strings.Contains(out, "192.0.2.7") {
		t.Errorf("nslookup example.test: %v\n%s", err, out)
	}
	if out, _ := lookup("nothing.test"); !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("nslookup nothing.test:\n%s", out)
	}
	tcp := func(name string) string {
		t.Helper()
		out, err := guest.Try("env", envChild+"=tcp-client", os.Args[0], "-test.run=^$", name)
		if err != nil {
			t.Fatalf("TCP client: %v\n%s", err, out)
		}
		return strings.TrimSpace(out)
	}
	if out := tcp("big.test"); out != "NOERROR 40" {
		t.Errorf("big.test over TCP: %s", out)
	}

	// The host's resolvers change: the forwarder follows.
	write("nameserver 127.0.0.54\n")
	if out, _ := lookup("example.test"); !strings.Contains(out, "SERVFAIL") {
		t.Errorf("nslookup with no resolver answering:\n%s", out)
	}
	write("nameserver 127.0.0.53\n")
	if out, err := lookup("example.test"); err != nil || !strings.Contains(out, "192.0.2.7") {
		t.Errorf("nslookup after resolv.conf changed back: %v\n%s", err, out)
	}
}

// recorder is a dns.ResponseWriter that keeps the reply.
type recorder struct{ reply chan *dns.Msg }

func (r *recorder) LocalAddr() net.Addr       { return &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr      { return &net.UDPAddr{IP: net.IPv4(10, 77, 0, 2), Port: 4000} }
func (r *recorder) WriteMsg(m *dns.Msg) error { r.reply <- m; return nil }
func (r *recorder) Write([]byte) (int, error) { return 0, nil }
func (r *recorder) Close() error              { return nil }
func (r *recorder) TsigStatus() error         { return nil }
func (r *recorder) TsigTimersOnly(bool)       {}
func (r *recorder) Hijack()                   {}

// TestInFlightBound: with one query waiting on a resolver that never
// answers, the next is refused at once (SERVFAIL), not queued.
func TestInFlightBound(t *testing.T) {
	testenv.RequireRoot(t, "the forwarder listens on port 53 in a namespace")
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ns := netnstest.New(t)
	var f *dnsfwd.Forwarder
	if err := ns.Do(func() (err error) {
		f, err = dnsfwd.Listen(dnsfwd.Config{
			Upstreams:   func() []string { return []string{silent.LocalAddr().String()} },
			Timeout:     10 * time.Second,
			MaxInFlight: 1,
		}, netip.MustParseAddr("127.0.0.1"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q := new(dns.Msg)
	q.SetQuestion("example.test.", dns.TypeA)
	first, second := &recorder{reply: make(chan *dns.Msg, 1)}, &recorder{reply: make(chan *dns.Msg, 1)}
	go f.ServeDNS(first, q)
	// The resolver receiving the query shows that the first holds the
	// only slot (until its timeout).
	buf := make([]byte, 512)
	silent.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, _, err := silent.ReadFrom(buf); err != nil {
		t.Fatalf("the first query did not reach the resolver: %v", err)
	}
	f.ServeDNS(second, q)
	if m := <-second.reply; m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("the second query got %s, want SERVFAIL at once", dns.RcodeToString[m.Rcode])
	}
	select {
	case m := <-first.reply:
		t.Fatalf("the first query was answered (%s) by a silent resolver", dns.RcodeToString[m.Rcode])
	default:
	}
}
