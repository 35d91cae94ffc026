// Package sshtest is an SSH server for tests of paddock ssh and paddock
// cp: it plays a guest's sshd on a loopback port, so the system's ssh and
// scp (the programs paddock runs) can be tested against it. It accepts
// one user with one public key, answers exec requests with a function
// of the test's and serves the SFTP subsystem (which scp uses) on the
// host's file system (github.com/pkg/sftp).
package sshtest

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"crypto/ed25519"
	"crypto/rand"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Server is a running test SSH server.
type Server struct {
	// Addr is its address, 127.0.0.1:PORT.
	Addr string
	// HostKey is its host key.
	HostKey ssh.PublicKey

	mu    sync.Mutex
	execs []string
}

// Exec answers one exec request: the output and exit status of command.
type Exec func(command string) (stdout string, status uint32)

// Start runs a server until the test ends that lets user in with the
// public key authorized (an authorized_keys line) and answers exec
// requests with exec.
func Start(t *testing.T, user, authorized string, exec Exec) *Server {
	t.Helper()
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorized))
	if err != nil {
		t.Fatalf("sshtest: authorized key: %v", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if c.User() == user && string(k.Marshal()) == string(want.Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, fmt.Errorf("sshtest: %s with that key is not let in", c.User())
		},
	}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: l.Addr().String(), HostKey: signer.PublicKey()}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(c, cfg, exec) })
		}
	})
	return s
}

// Execs returns the commands the server was asked to run.
func (s *Server) Execs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.execs...)
}

// serve runs one connection.
func (s *Server) serve(c net.Conn, cfg *ssh.ServerConfig, exec Exec) {
	defer c.Close()
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go s.session(ch, chReqs, exec)
	}
}

// session answers a session's requests: exec runs the test's function.
func (s *Server) session(ch ssh.Channel, reqs <-chan *ssh.Request, exec Exec) {
	defer ch.Close()
	for r := range reqs {
		switch r.Type {
		case "exec":
			cmd, ok := sshString(r.Payload)
			r.Reply(ok, nil)
			if !ok {
				return
			}
			s.mu.Lock()
			s.execs = append(s.execs, cmd)
			s.mu.Unlock()
			out, status := exec(cmd)
			ch.Write([]byte(out))
			ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
			return
		case "subsystem":
			name, ok := sshString(r.Payload)
			r.Reply(ok && name == "sftp", nil)
			if !ok || name != "sftp" {
				continue
			}
			// The channel stays open for the exit status, as sshd
			// sends it when its sftp-server ends.
			srv, err := sftp.NewServer(keepOpen{ch})
			if err == nil {
				srv.Serve()
				srv.Close()
			}
			ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, 0))
			return
		case "env", "pty-req":
			r.Reply(true, nil)
		default:
			r.Reply(false, nil)
		}
	}
}

// keepOpen is a channel whose Close does nothing.
type keepOpen struct{ ssh.Channel }

func (keepOpen) Close() error { return nil }

// sshString decodes an SSH string (uint32 length, bytes).
func sshString(b []byte) (string, bool) {
	if len(b) < 4 {
		return "", false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) != uint64(len(b)-4) {
		return "", false
	}
	return string(b[4:]), true
}

// HostKeyBlock is how cloud-init prints host keys on a guest's console,
// with the server's key, as a guest's console log would hold it.
func (s *Server) HostKeyBlock() string {
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))
	return "<14>Dec  6 03:00:00 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\r\n" +
		"-----BEGIN SSH HOST KEY KEYS-----\r\n" + key + " root@web\r\n-----END SSH HOST KEY KEYS-----\r\n"
}
