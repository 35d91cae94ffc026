package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/console"
	lv "github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// libvirtBackend is the Backend of libvirt: each VM is a domain on a
// libvirt host (guest/libvirt), and its directory holds where it lives
// (libvirt.json). The domain's state, as libvirt reports it, is the VM's
// state; state.json keeps what paddock knows beyond it: when the VM was
// created and started, and how its latest run ended.
type libvirtBackend struct {
	store *store.Store
	hosts *lv.Hosts
}

// Kind implements Backend.
func (b *libvirtBackend) Kind() configs.Backend { return configs.BackendLibvirt }

// isLibvirt reports whether the VM v lives on libvirt: its directory
// says where (libvirt.json, written before anything is made on a host).
// A libvirt VM whose create was interrupted before that reads as a native
// VM that never started, which the native backend refuses to start and
// rm removes: nothing of it is anywhere else.
func isLibvirt(v *store.VM) bool { return lv.HasPlacement(v.Dir) }

// pickHost finds the host a new VM goes to, connected: the spec's
// libvirt.uri, its libvirt.host, or with host auto the reachable host
// with the most free memory (among those with KVM, for type kvm).
func (b *libvirtBackend) pickHost(vm *configs.VM) (*lv.Conn, error) {
	if vm.Libvirt.URI != "" {
		return lv.Connect(lv.Host{URI: vm.Libvirt.URI})
	}
	if vm.Libvirt.Host != configs.LibvirtAutoHost {
		h, err := b.hosts.Get(vm.Libvirt.Host)
		if err != nil {
			return nil, err
		}
		return lv.Connect(h)
	}
	hosts, err := b.hosts.List()
	if err != nil {
		return nil, err
	}
	probes := make([]hostProbe, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() { probes[i] = probeHost(h, vm.Libvirt.Type == configs.LibvirtKVM) })
	}
	wg.Wait()
	best, err := chooseHost(probes)
	for i, p := range probes {
		if i != best && p.conn != nil {
			p.conn.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("libvirt.host auto: no host can run VM %s: %w", vm.Name, err)
	}
	return probes[best].conn, nil
}

// hostProbe is what auto placement learnt of one host.
type hostProbe struct {
	host lv.Host
	conn *lv.Conn
	free uint64 // bytes
	// err is why the host cannot take the VM.
	err error
}

// probeHost connects to h and reads its free memory; with kvm, a host
// without KVM is refused.
func probeHost(h lv.Host, kvm bool) hostProbe {
	p := hostProbe{host: h}
	c, err := lv.Connect(h)
	if err != nil {
		p.err = err
		return p
	}
	if p.free, err = c.FreeMemory(); err == nil && kvm {
		_, err = c.ResolveType(lv.TypeKVM)
	}
	if err != nil {
		c.Close()
		p.err = err
		return p
	}
	p.conn = c
	return p
}

// chooseHost picks the probe with the most free memory among those
// without an error (the first of equals); an error lists why each host
// was passed over.
func chooseHost(probes []hostProbe) (int, error) {
	best := -1
	var why []string
	for i, p := range probes {
		if p.err != nil {
			why = append(why, p.err.Error())
			continue
		}
		if best < 0 || p.free > probes[best].free {
			best = i
		}
	}
	if best < 0 {
		return -1, errors.New(strings.Join(why, "; "))
	}
	return best, nil
}

// Create implements Backend: it places the VM on a host, puts what it
// boots into the host's pool, and defines its domain. libvirt.json is
// written first and kept current, so that whatever an interrupted create
// made on the host is found and removed with the VM.
func (b *libvirtBackend) Create(ctx context.Context, v *store.VM, vm *configs.VM) error {
	id, err := v.EnsureIdentity()
	if err != nil {
		return err
	}
	c, err := b.pickHost(vm)
	if err != nil {
		return err
	}
	defer c.Close()
	// The domain's UUID is the VM's (identity.json).
	pl := &lv.Placement{Host: c.Host, UUID: id.UUID.String()}
	if err := lv.WritePlacement(v.Dir, pl); err != nil {
		return err
	}
	if err := b.define(ctx, v, vm, c, pl); err != nil {
		if cerr := b.clean(c, v.Name, pl); cerr != nil {
			return errors.Join(err, cerr)
		}
		return err
	}
	return nil
}

// define does Create's work on the host.
func (b *libvirtBackend) define(ctx context.Context, v *store.VM, vm *configs.VM, c *lv.Conn, pl *lv.Placement) error {
	typ, err := c.ResolveType(vm.Libvirt.Type)
	if err != nil {
		return err
	}
	pl.DomainType = typ
	// A name libvirt knows already is refused before anything is put
	// there.
	if err := c.CheckName(vm.Name, pl.UUID); err != nil {
		return err
	}
	pool, err := c.Pool(true)
	if err != nil {
		return err
	}
	pl.ConsoleLog = path.Join(pool.Dir, pl.ConsoleLogName())
	tmpl, err := b.template(v)
	if err != nil {
		return err
	}
	files := lv.Files{}
	share := func(file string) (lv.Volume, error) {
		vol, err := pool.Share(ctx, lv.Content{Path: file, SHA256: tmpl.sums[file]}, lv.OpenVerified(b.store.Home()))
		if err != nil {
			return lv.Volume{}, err
		}
		pl.Shared = append(pl.Shared, vol.Name)
		return vol, nil
	}
	kernel, err := share(vm.Kernel)
	if err != nil {
		return err
	}
	files.Kernel = kernel.Path
	if vm.Initrd != "" {
		initrd, err := share(vm.Initrd)
		if err != nil {
			return err
		}
		files.Initrd = initrd.Path
	}
	pins, err := vmm.PinFormats(v, vm)
	if err != nil {
		return err
	}
	for i, d := range vm.Disks {
		format := d.Format
		if format == "" {
			format = pins[i]
		}
		var vol lv.Volume
		if o, ok := tmpl.overlays[i]; ok {
			vol, err = b.putOverlay(pool, pl, v, share, o, tmpl.disks[i])
		} else {
			vol, err = b.putDisk(ctx, v, pool, pl, i, d, format, share)
		}
		if err != nil {
			return fmt.Errorf("disks[%d]: %w", i, err)
		}
		files.Disks = append(files.Disks, vol)
		files.Formats = append(files.Formats, format)
	}
	if files.MACs, err = vmm.NICMACs(vm); err != nil {
		return err
	}
	if vm.CloudInit {
		if files.Seed, err = b.putSeed(ctx, vm, pool, pl, v); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	desc, err := lv.DomainXML(vm, pl, pool.Name, files, lv.Metadata{Home: b.store.Home(), Machine: host})
	if err != nil {
		return err
	}
	if _, err := c.Define(vm.Name, pl.UUID, desc); err != nil {
		return err
	}
	pl.Defined = true
	return lv.WritePlacement(v.Dir, pl)
}

// putDisk puts the i-th disk's image into the pool: a read-only disk as
// shared content, a writable one as the VM's own volume. The image is
// opened as QEMU would read it (with its lock) while it is copied, so a
// VM that writes it meanwhile is refused; a qcow2 image with a backing
// file is refused, since the copy would name a file the host lacks.
func (b *libvirtBackend) putDisk(ctx context.Context, v *store.VM, pool *lv.Pool, pl *lv.Placement, i int, d configs.Disk, format string, share func(string) (lv.Volume, error)) (lv.Volume, error) {
	var held io.Closer
	if format == disk.FormatQcow2 {
		// The header only: a backing file is refused, never opened.
		q, err := qcow2.Open(d.Path, qcow2.Options{NoBacking: true, ReadOnly: true})
		if err != nil {
			return lv.Volume{}, err
		}
		held = q
		if backing, _ := q.BackingFile(); backing != "" {
			q.Close()
			return lv.Volume{}, fmt.Errorf("%s has a backing file (%s): the libvirt backend copies each disk as one file to its host; flatten it first (paddock image convert -O qcow2 %s FLAT.qcow2)", d.Path, backing, d.Path)
		}
	} else {
		img, err := disk.Open(d.Path, disk.Options{Format: disk.FormatRaw, ReadOnly: true})
		if err != nil {
			return lv.Volume{}, err
		}
		held = img
	}
	defer held.Close()
	if d.ReadOnly {
		return share(d.Path)
	}
	name, err := ownVolume(v, pl, i)
	if err != nil {
		return lv.Volume{}, err
	}
	return pool.Import(ctx, name, d.Path)
}

// putSeed makes the VM's cloud-init seed volume (the NoCloud image the
// native backend writes as seed.iso) on the host, one of its own volumes.
func (b *libvirtBackend) putSeed(ctx context.Context, vm *configs.VM, pool *lv.Pool, pl *lv.Placement, v *store.VM) (string, error) {
	id, err := uuid.Parse(pl.UUID)
	if err != nil {
		return "", fmt.Errorf("VM %s: %w", vm.Name, err)
	}
	img, err := seedImage(vm, id)
	if err != nil {
		return "", err
	}
	// The seed is kept in the VM's directory, as a native VM's is, and
	// uploaded from there.
	if err := store.WriteFileAtomic(v.Path(store.SeedFile), img, 0o600); err != nil {
		return "", err
	}
	name := pl.VolumePrefix() + "seed.iso"
	pl.Volumes = append(pl.Volumes, name)
	if err := lv.WritePlacement(v.Dir, pl); err != nil {
		return "", err
	}
	if _, err := pool.Import(ctx, name, v.Path(store.SeedFile)); err != nil {
		return "", err
	}
	return name, nil
}

// clean removes what pl says the VM has on the host c: its domain (if it
// is the VM's: paddock never touches another) and every volume whose
// name says it is the VM's, its console logs included. Precondition: the
// domain is not running.
func (b *libvirtBackend) clean(c *lv.Conn, name string, pl *lv.Placement) error {
	var errs []error
	d, err := c.Domain(name, pl.UUID)
	switch {
	case err == nil:
		errs = append(errs, d.Undefine())
	case !errors.Is(err, lv.ErrNoDomain) && !isForeign(err):
		errs = append(errs, err)
	}
	pool, err := c.Pool(false)
	switch {
	case errors.Is(err, lv.ErrNoPool):
		return errors.Join(errs...)
	case err != nil:
		return errors.Join(append(errs, err)...)
	}
	if err := pool.Refresh(); err != nil {
		return errors.Join(append(errs, err)...)
	}
	names, err := pool.Names(pl.VolumePrefix())
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, n := range names {
		errs = append(errs, pool.Delete(n))
	}
	return errors.Join(errs...)
}

// isForeign reports whether err is a *lv.ForeignError.
func isForeign(err error) bool {
	var fe *lv.ForeignError
	return errors.As(err, &fe)
}

// domain opens the VM's domain: its placement, a connection to its host
// (which the caller closes) and the domain.
func (b *libvirtBackend) domain(v *store.VM) (*lv.Placement, *lv.Conn, *lv.Dom, error) {
	pl, err := lv.ReadPlacement(v.Dir)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := lv.Connect(pl.Host)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("VM %s: %w", v.Name, err)
	}
	d, err := c.Domain(v.Name, pl.UUID)
	if err != nil {
		c.Close()
		if errors.Is(err, lv.ErrNoDomain) {
			return nil, nil, nil, fmt.Errorf("VM %s: its domain is gone from %s (undefined outside paddock): paddock rm %s forgets the VM", v.Name, pl.Host, v.Name)
		}
		return nil, nil, nil, fmt.Errorf("VM %s: %w", v.Name, err)
	}
	return pl, c, d, nil
}

// domainState maps a domain's state to a VM's, given paddock's record:
// a shut-off domain paddock never started is created, one whose latest
// end paddock recorded (or the guest powered off) stopped or crashed.
func domainState(st lv.State, rec store.Record) store.State {
	if s, ok := lv.ActiveState(st); ok {
		return store.State(s)
	}
	if rec.Phase == store.PhaseCreated {
		return store.StateCreated
	}
	if rec.Exit != nil && rec.Exit.Reason.Failed() {
		return store.StateCrashed
	}
	return store.StateStopped
}

// State implements Backend: libvirt's domain state is the VM's. A host
// that cannot be reached shows the VM as unknown; a domain that is gone
// as crashed. An end paddock did not see (the guest powered off, the
// domain crashed or was destroyed behind paddock's back) is recorded on
// the way, as the native backend records a dead VMM.
func (b *libvirtBackend) State(v *store.VM, in *Info) error {
	rec, err := v.ReadRecord()
	if err != nil {
		in.State = store.StateCrashed
		return err
	}
	in.CreatedAt, in.Source = rec.CreatedAt, rec.Source
	in.LastExit, in.StartError = rec.Exit, rec.StartError
	pl, err := lv.ReadPlacement(v.Dir)
	if err != nil {
		in.State, in.Problem = store.StateUnknown, err.Error()
		return nil
	}
	in.Host = pl.Host.Name
	if in.Host == "" {
		in.Host = pl.Host.URI
	}
	c, err := lv.Connect(pl.Host)
	if err != nil {
		in.State, in.Problem = store.StateUnknown, err.Error()
		return nil
	}
	defer c.Close()
	d, err := c.Domain(v.Name, pl.UUID)
	switch {
	case errors.Is(err, lv.ErrNoDomain) && !pl.Defined:
		in.State, in.Problem = store.StateCreated, "its create was interrupted before its domain was defined: paddock rm "+v.Name
		return nil
	case errors.Is(err, lv.ErrNoDomain):
		in.State, in.Problem = store.StateCrashed, fmt.Sprintf("its domain is gone from %s (undefined outside paddock)", pl.Host)
		return nil
	case err != nil:
		in.State, in.Problem = store.StateUnknown, err.Error()
		return nil
	}
	st, err := d.State()
	if err != nil {
		in.State, in.Problem = store.StateUnknown, err.Error()
		return nil
	}
	if !st.Active() && rec.Phase == store.PhaseRunning {
		// Paddock started it and did not stop it: the guest ended.
		rec = b.noteEnd(v, st)
		in.LastExit = rec.Exit
	}
	in.State = domainState(st, rec)
	if in.State.Active() {
		in.StartedAt, in.BootedAt, in.Boots = rec.StartedAt, rec.BootedAt, rec.Boots
		if !rec.BootedAt.IsZero() && (in.State == store.StateRunning || in.State == store.StatePaused) {
			in.Uptime = time.Since(rec.BootedAt).Round(time.Second).Seconds()
		}
	}
	return nil
}

// noteEnd records the end of a run paddock did not end, from what libvirt
// says about the shut-off domain, if the VM's lock is free (a command
// that holds it records the end itself). It returns the record.
func (b *libvirtBackend) noteEnd(v *store.VM, st lv.State) store.Record {
	l, err := v.Lock()
	if err != nil {
		rec, _ := v.ReadRecord()
		rec.Exit = &store.Exit{Reason: lv.EndReason(st), Detail: lv.EndDetail(st), At: time.Now()}
		return rec
	}
	defer l.Unlock()
	rec, err := v.ReadRecord()
	if err != nil || rec.Phase != store.PhaseRunning {
		return rec
	}
	rec.Phase = store.PhaseExited
	rec.Exit = &store.Exit{Reason: lv.EndReason(st), Detail: lv.EndDetail(st), At: time.Now()}
	_ = v.WriteRecord(rec)
	return rec
}

// stateError is the StateError of op on a VM whose domain is in st, in
// the native VMM's words.
func stateError(v *store.VM, op string, st lv.State, hint string) error {
	rec, _ := v.ReadRecord()
	e := &StateError{Name: v.Name, Op: op, State: domainState(st, rec), Hint: hint}
	if op == "resume" && e.State == store.StateRunning {
		e.Message = fmt.Sprintf("cannot resume VM '%s': it is running, not paused", v.Name)
	}
	return e
}

// Start implements Backend.
func (b *libvirtBackend) Start(ctx context.Context, v *store.VM) error {
	rec, err := v.ReadRecord()
	if !usable(err) {
		return err
	}
	_, c, d, _, err := b.open(v, "start", func(st lv.State) bool { return !st.Active() })
	if err != nil {
		return err
	}
	defer c.Close()
	if err := d.Start(); err != nil {
		rec.StartError = err.Error()
		if rec.Phase != store.PhaseCreated {
			rec.Phase = store.PhaseExited
		}
		_ = v.WriteRecord(rec)
		return &StartError{Name: v.Name, Err: err}
	}
	now := time.Now()
	rec.Phase, rec.StartError = store.PhaseRunning, ""
	rec.StartedAt, rec.BootedAt, rec.Boots, rec.Restarts = now, now, 1, 0
	rec.RunID, rec.PID = "", 0
	return v.WriteRecord(rec)
}

// status is a running domain's live status.
func (b *libvirtBackend) status(v *store.VM, d *lv.Dom, st lv.State) api.Status {
	rec, _ := v.ReadRecord()
	s := api.Status{Name: v.Name, State: string(domainState(st, rec)), StartedAt: rec.StartedAt, BootedAt: rec.BootedAt, Boots: rec.Boots}
	if info, err := d.Info(); err == nil {
		s.CPUs, s.Memory = info.CPUs, info.Memory
	}
	return s
}

// Pause implements Backend.
func (b *libvirtBackend) Pause(ctx context.Context, v *store.VM) (api.Status, error) {
	return b.change(v, "pause", lv.CanPause, (*lv.Dom).Suspend)
}

// Resume implements Backend.
func (b *libvirtBackend) Resume(ctx context.Context, v *store.VM) (api.Status, error) {
	return b.change(v, "resume", lv.CanResume, (*lv.Dom).Resume)
}

// Status implements Backend.
func (b *libvirtBackend) Status(ctx context.Context, v *store.VM) (api.Status, error) {
	return b.change(v, "query", lv.State.Active, nil)
}

// change does op to the VM's domain if its state allows (ok), and
// returns the status after it.
func (b *libvirtBackend) change(v *store.VM, op string, ok func(lv.State) bool, do func(*lv.Dom) error) (api.Status, error) {
	_, c, d, st, err := b.open(v, op, ok)
	if err != nil {
		return api.Status{}, err
	}
	defer c.Close()
	if do != nil {
		if err := do(d); err != nil {
			return api.Status{}, fmt.Errorf("VM %s: %s: %w", v.Name, op, err)
		}
		if st, err = d.State(); err != nil {
			return api.Status{}, err
		}
	}
	return b.status(v, d, st), nil
}

// open opens the VM's domain (see domain) and checks that its state
// allows op (ok): a *StateError if not. The caller closes the connection.
func (b *libvirtBackend) open(v *store.VM, op string, ok func(lv.State) bool) (*lv.Placement, *lv.Conn, *lv.Dom, lv.State, error) {
	pl, c, d, err := b.domain(v)
	if err != nil {
		return nil, nil, nil, lv.State{}, err
	}
	st, err := d.State()
	if err == nil && !ok(st) {
		err = stateError(v, op, st, "")
	}
	if err != nil {
		c.Close()
		return nil, nil, nil, lv.State{}, err
	}
	return pl, c, d, st, nil
}

// Stop implements Backend: the ACPI power button (a paused domain is
// resumed first, so the guest hears it), then libvirt's destroy after
// timeout.
func (b *libvirtBackend) Stop(ctx context.Context, v *store.VM, timeout time.Duration) (api.StopResult, error) {
	start := time.Now()
	_, c, d, st, err := b.open(v, "stop", lv.State.Active)
	if err != nil {
		return api.StopResult{}, err
	}
	defer c.Close()
	if lv.CanResume(st) {
		if err := d.Resume(); err != nil {
			return api.StopResult{}, fmt.Errorf("VM %s: stop: %w", v.Name, err)
		}
	}
	how := api.StopACPI
	off, err := d.Shutdown(ctx, timeout)
	if err != nil {
		return api.StopResult{}, fmt.Errorf("VM %s: stop: %w", v.Name, err)
	}
	if !off {
		how = api.StopForced
		if err := d.Destroy(); err != nil {
			return api.StopResult{}, fmt.Errorf("VM %s: stop: %w", v.Name, err)
		}
	}
	b.recordEnd(v, &store.Exit{Reason: exit.Stop, How: how, At: time.Now()})
	return api.StopResult{How: how, Elapsed: time.Since(start).Seconds()}, nil
}

// Kill implements Backend: libvirt's destroy.
func (b *libvirtBackend) Kill(ctx context.Context, v *store.VM) (api.StopResult, error) {
	start := time.Now()
	_, c, d, _, err := b.open(v, "kill", lv.State.Active)
	if err != nil {
		return api.StopResult{}, err
	}
	defer c.Close()
	if err := d.Destroy(); err != nil {
		return api.StopResult{}, fmt.Errorf("VM %s: kill: %w", v.Name, err)
	}
	b.recordEnd(v, &store.Exit{Reason: exit.Kill, At: time.Now()})
	return api.StopResult{How: api.StopKilled, Elapsed: time.Since(start).Seconds()}, nil
}

// recordEnd records how the VM's run ended.
func (b *libvirtBackend) recordEnd(v *store.VM, end *store.Exit) {
	rec, err := v.ReadRecord()
	if err != nil && !usable(err) {
		return
	}
	rec.Phase, rec.Exit = store.PhaseExited, end
	_ = v.WriteRecord(rec)
}

// Remove implements Backend: the domain is undefined and the VM's own
// volumes deleted; shared content volumes stay for other VMs. A host
// that cannot be reached keeps the VM unless force, which then forgets
// it and leaves its domain and volumes on the host.
func (b *libvirtBackend) Remove(ctx context.Context, v *store.VM, force bool) error {
	pl, err := lv.ReadPlacement(v.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing was made on a host
	}
	if err != nil {
		if force {
			return nil
		}
		return fmt.Errorf("VM %s: %w; paddock rm --force %s forgets the VM without cleaning its host", v.Name, err, v.Name)
	}
	c, err := lv.Connect(pl.Host)
	if err != nil {
		if force {
			return nil
		}
		return fmt.Errorf("VM %s: cannot remove its domain and volumes: %w; paddock rm --force %s forgets the VM and leaves them there", v.Name, err, v.Name)
	}
	defer c.Close()
	d, err := c.Domain(v.Name, pl.UUID)
	if err == nil {
		st, err := d.State()
		if err != nil {
			return err
		}
		if st.Active() {
			if !force {
				return stateError(v, "remove", st, "stop it first (paddock stop "+v.Name+"), or use --force")
			}
			if err := d.Destroy(); err != nil {
				return fmt.Errorf("VM %s: remove: %w", v.Name, err)
			}
		}
	}
	if err := b.clean(c, v.Name, pl); err != nil {
		return fmt.Errorf("VM %s: remove: %w", v.Name, err)
	}
	return nil
}

// Attach implements Backend: libvirt's console stream, on a connection of
// its own; tail > 0 replays the last lines of the console log first.
func (b *libvirtBackend) Attach(ctx context.Context, v *store.VM, tail int) (net.Conn, error) {
	pl, c, _, _, err := b.open(v, "attach to", lv.State.Active)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var history []byte
	if tail > 0 {
		pool, err := c.Pool(false)
		if err != nil {
			return nil, err
		}
		data, _, err := pool.ReadLog(pl)
		if err != nil {
			return nil, err
		}
		history = console.TailBytes(data, tail)
	}
	conn, err := lv.Console(pl.Host, v.Name, pl.UUID)
	if err != nil {
		return nil, fmt.Errorf("VM %s: %w", v.Name, err)
	}
	if len(history) == 0 {
		return conn, nil
	}
	return &replayConn{Conn: conn, first: history}, nil
}

// replayConn is a console connection whose reads start with the lines
// Attach replays.
type replayConn struct {
	net.Conn
	first []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// Logs implements Backend: the console log libvirt keeps on the host,
// downloaded from the pool; following, the rest as it comes.
func (b *libvirtBackend) Logs(ctx context.Context, v *store.VM, o LogOptions) (io.ReadCloser, error) {
	pl, c, d, err := b.domain(v)
	if err != nil {
		return nil, err
	}
	pool, err := c.Pool(false)
	if errors.Is(err, lv.ErrNoPool) {
		c.Close()
		return io.NopCloser(strings.NewReader("")), nil
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	data, offset, err := pool.ReadLog(pl)
	if err != nil {
		c.Close()
		return nil, err
	}
	history := console.TailBytes(data, o.Tail)
	if !o.Follow {
		c.Close()
		return io.NopCloser(strings.NewReader(string(history))), nil
	}
	ctx, cancel := context.WithCancel(ctx)
	r, w := io.Pipe()
	go func() {
		defer c.Close()
		if _, err := w.Write(history); err != nil {
			return
		}
		w.CloseWithError(pool.FollowLog(ctx, pl, d, offset, w))
	}()
	return &cancelReader{ReadCloser: r, cancel: cancel}, nil
}

// cancelReader cancels its follower when closed.
type cancelReader struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelReader) Close() error {
	c.cancel()
	return c.ReadCloser.Close()
}
