package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/google/uuid"
)

// IdentityVersion is the version of identity.json this code writes.
const IdentityVersion = 1

// Identity is what makes a VM itself for its guest and for other tools,
// kept in identity.json: written once, when the VM is created (or at the
// first start of a VM created before paddock recorded identities), and
// never rewritten. The guest sees the UUID as its SMBIOS system UUID
// (/sys/class/dmi/id/product_uuid) and as cloud-init's instance-id; the
// libvirt backend uses it as the domain's UUID. A clone gets a new one.
type Identity struct {
	// UUID is the VM's stable, random (version 4) UUID.
	UUID uuid.UUID
}

// identityFile is identity.json.
type identityFile struct {
	Version int    `json:"version"`
	UUID    string `json:"uuid"`
}

// identityMode is identity.json's mode: read-only, as paddock never
// changes it.
const identityMode = 0o400

// NewIdentity returns a fresh identity: a new random UUID.
func NewIdentity() (Identity, error) {
	u, err := uuid.NewRandom()
	if err != nil {
		return Identity{}, fmt.Errorf("store: generate a VM UUID: %w", err)
	}
	return Identity{UUID: u}, nil
}

// marshalIdentity encodes identity.json.
func marshalIdentity(id Identity) ([]byte, error) {
	data, err := json.MarshalIndent(identityFile{Version: IdentityVersion, UUID: id.UUID.String()}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("store: encode identity: %w", err)
	}
	return append(data, '\n'), nil
}

// parseIdentity decodes identity.json content; path names it in errors.
func parseIdentity(data []byte, path string) (Identity, error) {
	var f identityFile
	if err := json.Unmarshal(data, &f); err != nil {
		return Identity{}, fmt.Errorf("store: %s: %w", path, err)
	}
	if f.Version > IdentityVersion {
		return Identity{}, fmt.Errorf("store: %s: version %d %w (this one reads version %d)", path, f.Version, ErrRecordVersion, IdentityVersion)
	}
	u, err := uuid.Parse(f.UUID)
	if err != nil {
		return Identity{}, fmt.Errorf("store: %s: uuid %q: %w", path, f.UUID, err)
	}
	if u == uuid.Nil {
		return Identity{}, fmt.Errorf("store: %s: uuid is the nil UUID", path)
	}
	return Identity{UUID: u}, nil
}

// ReadIdentity returns the VM's identity; ok is false (and err nil) if
// none was recorded yet.
func (v *VM) ReadIdentity() (id Identity, ok bool, err error) {
	path := v.Path(IdentityFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Identity{}, false, nil
	}
	if err != nil {
		return Identity{}, false, fmt.Errorf("store: VM %s: %w", v.Name, err)
	}
	id, err = parseIdentity(data, path)
	if err != nil {
		return Identity{}, false, fmt.Errorf("%w; it holds the VM's UUID, which its guest knows it by: restore it from a backup, or remove it to give the VM a new UUID at its next start", err)
	}
	return id, true, nil
}

// EnsureIdentity returns the VM's identity, recording a new one if the
// VM has none yet (a VM created before paddock recorded identities).
// Concurrent calls agree: the file appears in one link(2), which fails if
// another call got there first, and then that call's identity is read.
func (v *VM) EnsureIdentity() (Identity, error) {
	if id, ok, err := v.ReadIdentity(); err != nil || ok {
		return id, err
	}
	id, err := NewIdentity()
	if err != nil {
		return Identity{}, err
	}
	data, err := marshalIdentity(id)
	if err != nil {
		return Identity{}, err
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return Identity{}, fmt.Errorf("store: VM %s: record identity: %w", v.Name, err)
	}
	tmp := v.Path("." + IdentityFile + ".tmp-" + hex.EncodeToString(rnd[:]))
	defer os.Remove(tmp)
	err = writeSynced(tmp, data, identityMode)
	if err == nil {
		err = os.Link(tmp, v.Path(IdentityFile))
	}
	switch {
	case errors.Is(err, fs.ErrExist):
		id, _, err := v.ReadIdentity()
		return id, err
	case err != nil:
		return Identity{}, fmt.Errorf("store: VM %s: record identity: %w", v.Name, err)
	}
	if err := syncDir(v.Dir); err != nil {
		return Identity{}, err
	}
	return id, nil
}
