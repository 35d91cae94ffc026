package guest

import (
	"fmt"

	"github.com/google/uuid"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/access"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
	"github.com/paddock-vm/paddock/images/cloudinit"
)

// authorizePaddock adds paddock's own public key (created in home the
// first time) before vm's ssh_keys, and writes every key file's keys in
// place of its path, so the VM's resolved spec holds the keys themselves
// (docs/yaml.md, ssh_keys). A VM without cloud_init is left alone.
// Precondition: vm validated.
func authorizePaddock(vm *configs.VM, home string) error {
	if !vm.CloudInit {
		return nil
	}
	k, err := access.EnsureKey(home)
	if err != nil {
		return fmt.Errorf("VM %s: paddock's SSH key: %w", vm.Name, err)
	}
	keys, err := vm.AuthorizedKeys()
	if err != nil {
		return err
	}
	all := []string{k.Public}
	for _, key := range keys {
		if key != k.Public {
			all = append(all, key)
		}
	}
	vm.SSHKeys = all
	return nil
}

// seedImage returns the cloud-init seed volume of vm, whose UUID is id
// (docs/yaml.md, "What the guest sees").
func seedImage(vm *configs.VM, id uuid.UUID) ([]byte, error) {
	keys, err := vm.AuthorizedKeys()
	if err != nil {
		return nil, err
	}
	macs, err := vmm.NICMACs(vm)
	if err != nil {
		return nil, err
	}
	s := &cloudinit.Seed{
		InstanceID:     id.String(),
		Hostname:       vm.Name,
		User:           vm.User,
		AuthorizedKeys: keys,
		UserData:       vm.UserData,
	}
	for _, m := range macs {
		s.MACs = append(s.MACs, m.String())
	}
	img, err := s.Image()
	if err != nil {
		return nil, fmt.Errorf("VM %s: cloud-init seed: %w", vm.Name, err)
	}
	return img, nil
}

// writeSeed writes the managed VM's seed.iso from its spec and identity,
// replacing the one of its last start. A VM without cloud_init gets none.
// Precondition: the VM's lock is held and no VMM runs it.
func writeSeed(v *store.VM, vm *configs.VM) error {
	if !vm.CloudInit {
		return nil
	}
	id, err := v.EnsureIdentity()
	if err != nil {
		return err
	}
	img, err := seedImage(vm, id.UUID)
	if err != nil {
		return err
	}
	return store.WriteFileAtomic(v.Path(store.SeedFile), img, 0o600)
}
