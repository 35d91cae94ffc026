package network

import (
	"errors"
	"fmt"
	"net"
	"os"
)

// Handover ends the attachment's hold in this process, for the process
// that runs the VM to keep it (Adopt): it returns the connections to the
// networks' netds as files, and closes the attachment's own descriptors
// of them with a plain close, which a netd does not see (the sockets stay
// open through the files). The caller hands the files over and closes
// them. An ephemeral attachment (a foreground run's) is not handed over.
func (a *Attachment) Handover() ([]*os.File, error) {
	if a.ephemeral {
		return nil, errors.New("network: an ephemeral attachment is not handed over")
	}
	var files []*os.File
	for _, c := range a.conns {
		uc, ok := c.(*net.UnixConn)
		if !ok {
			closeFiles(files)
			return nil, fmt.Errorf("network: hand over a connection of type %T", c)
		}
		f, err := uc.File()
		if err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("network: hand over the connection to netd: %w", err)
		}
		files = append(files, f)
	}
	for _, c := range a.conns {
		c.Close()
	}
	a.conns, a.release = nil, nil
	return files, nil
}

// Adopt makes the attachment whose netd connections another process
// attached and handed over (Handover): closing it detaches the VM as the
// original would have. Its Bridges and Leases are empty: the process that
// attached used them. Adopt takes the files over.
func Adopt(files []*os.File) (*Attachment, error) {
	a := &Attachment{Bridges: map[int]string{}, Leases: map[int]Lease{}}
	for i, f := range files {
		c, err := net.FileConn(f)
		f.Close()
		if err == nil {
			if _, ok := c.(*net.UnixConn); !ok {
				c.Close()
				err = errors.New("not a unix socket")
			}
		}
		if err != nil {
			closeFiles(files[i+1:])
			return nil, errors.Join(fmt.Errorf("network: the handed connection %s: %w", f.Name(), err), a.Close())
		}
		a.conns = append(a.conns, c)
	}
	return a, nil
}

// closeFiles closes files.
func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
