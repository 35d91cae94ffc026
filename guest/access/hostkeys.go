package access

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/paddock-vm/paddock/guest/console"
	"golang.org/x/crypto/ssh"
)

// The block cloud-init's keys-to-console module prints on the guest's
// console at the first boot: the guest's SSH host public keys, one a line.
const (
	beginHostKeys = "-----BEGIN SSH HOST KEY KEYS-----"
	endHostKeys   = "-----END SSH HOST KEY KEYS-----"
	// maxHostKeys bounds the keys one block may give.
	maxHostKeys = 16
	// maxConsoleLine bounds a console line the scan looks at; longer
	// ones are skipped.
	maxConsoleLine = 64 << 10
)

// ConsoleHostKeys returns the SSH host keys in the last complete block
// cloud-init printed to the guest's console, reading the console logs in
// the order given (oldest first; a missing file is skipped), or none.
// The console is the guest's own channel to the host, which no other
// machine on its network can write to, so keys read there identify the
// guest better than whatever answers first at its address. Lines that
// are not keys are ignored; a block with none counts as none.
func ConsoleHostKeys(logs ...string) ([]ssh.PublicKey, error) {
	var last []ssh.PublicKey
	for _, path := range logs {
		f, err := console.OpenLogForReading(path) // no link, no FIFO
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		keys, err := scanHostKeys(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("access: read %s: %w", path, err)
		}
		if keys != nil {
			last = keys
		}
	}
	return last, nil
}

// HostKeysIn is ConsoleHostKeys of one console log read from r.
func HostKeysIn(r io.Reader) ([]ssh.PublicKey, error) {
	keys, err := scanHostKeys(r)
	if err != nil {
		return nil, fmt.Errorf("access: read a console log: %w", err)
	}
	return keys, nil
}

// scanHostKeys returns the keys of the last complete block in r.
func scanHostKeys(r io.Reader) ([]ssh.PublicKey, error) {
	var last, cur []ssh.PublicKey
	in := false
	br := bufio.NewReaderSize(r, 4096)
	for {
		line, long, err := readLine(br)
		if err == io.EOF {
			return last, nil
		}
		if err != nil {
			return nil, err
		}
		if long {
			continue
		}
		switch {
		case strings.Contains(line, beginHostKeys):
			in, cur = true, nil
		case strings.Contains(line, endHostKeys):
			if in && len(cur) > 0 {
				last = cur
			}
			in = false
		case in && len(cur) < maxHostKeys:
			if k := parseKeyIn(line); k != nil {
				cur = append(cur, k)
			}
		}
	}
}

// readLine reads one line without its line ending; long reports a line
// longer than maxConsoleLine, which is consumed and not returned.
func readLine(r *bufio.Reader) (line string, long bool, err error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(b)+len(chunk) > maxConsoleLine {
			long = true
		} else {
			b = append(b, chunk...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && (len(b) > 0 || long):
			err = nil
		}
		return strings.TrimRight(string(b), "\r\n"), long, err
	}
}

// parseKeyIn returns the public key a console line holds, after whatever
// the console put before it (a timestamp, a logger tag), or nil.
func parseKeyIn(line string) ssh.PublicKey {
	for _, p := range []string{"ssh-", "ecdsa-", "sk-"} {
		i := strings.Index(line, p)
		if i < 0 {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line[i:]))
		if err == nil {
			return k
		}
	}
	return nil
}

// KnownHosts renders keys as a known_hosts file for host (a name or a
// HostKeyAlias).
func KnownHosts(host string, keys []ssh.PublicKey) []byte {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(host + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + "\n")
	}
	return []byte(b.String())
}
