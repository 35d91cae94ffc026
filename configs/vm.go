// Package configs is the VM YAML schema: the types one YAML file decodes
// into, strict decoding with file:line:column positions, defaults and
// validation.
//
// The pipeline is Load (or Parse) -> FillDefaults -> Validate. Load rejects
// what is not YAML or not this schema (unknown fields, wrong types, duplicate
// keys, several documents); Validate checks values, files and host limits.
// Both report every problem they find, joined with errors.Join; each problem
// is an *Error printed as `FILE:LINE:COL: FIELD.PATH: problem`.
//
// Field paths are the YAML keys joined with dots: "cpus", "console.mode",
// "libvirt.uri".
package configs

import "github.com/paddock-vm/paddock/hypervisor/boot"

// Defaults filled by FillDefaults.
const (
	DefaultCPUs       = 1
	DefaultMemory     = 512 * MiB
	DefaultCmdline    = "console=ttyS0"
	DefaultLibvirtURI = "qemu:///system" // the libvirt host "local", unless paddock host add says otherwise
	// DefaultConsoleLogSize and DefaultConsoleLogKeep bound a console log:
	// at most 8MiB on disk, in the file and the one rotated before it.
	DefaultConsoleLogSize = 4 * MiB
	DefaultConsoleLogKeep = 1
)

// Limits checked by Validate.
const (
	// MaxCPUs is the largest vCPU count: x86 xAPIC IDs are 8 bits and 0xff
	// is the broadcast ID, so 255 CPUs (IDs 0..254) is what the MP and ACPI
	// MADT tables paddock writes can describe.
	MaxCPUs = 255
	// MinMemory is the smallest guest RAM, the boot loader's limit (the
	// machine refuses less): below it no current x86-64 Linux kernel with
	// an initramfs gets to init.
	MinMemory ByteSize = boot.MinMemory
	// MaxMemory bounds guest RAM when the host is unknown: 1 TiB is the
	// 40-bit guest-physical address space QEMU also defaults to, and keeps
	// memory layout arithmetic far from overflow.
	MaxMemory = 1 * TiB
	// MinConsoleLogSize and MaxConsoleLogSize bound console.log_size,
	// MaxConsoleLogKeep console.log_keep (which is at least 1).
	MinConsoleLogSize = 4 * KiB
	MaxConsoleLogSize = 1 * TiB
	MaxConsoleLogKeep = 100
	// MemoryAlign is the granularity of guest RAM: sizes must be whole MiB,
	// so the memory layout never has to round a user's request.
	MemoryAlign = MiB
	// MaxCmdlineLen is the longest kernel command line in bytes: the x86
	// kernel's COMMAND_LINE_SIZE is 2048 including the terminating NUL.
	MaxCmdlineLen = 2047
	// MaxNameLen is the longest VM name: one DNS label.
	MaxNameLen = 63
	// MaxLabels bounds how many labels one VM has.
	MaxLabels = 64
	// MaxLabelKeyLen and MaxLabelValueLen bound a label's key and value,
	// in bytes.
	MaxLabelKeyLen   = 63
	MaxLabelValueLen = 255
)

// VM is one virtual machine as described by its YAML file.
//
// A VM returned by Load or Parse remembers where each field was written, for
// Position and Errorf; a VM built in Go has no positions and its messages
// carry only field paths. Read VM files with Load or Parse, not with
// yaml.Unmarshal, which knows neither the strict rules nor the shorthands;
// yaml.Marshal writes a VM that Parse reads back.
type VM struct {
	// Name identifies the VM: a DNS label, used for state directories, tap
	// device names and the guest hostname. Required.
	Name string `yaml:"name" json:"name"`
	// Labels are free-form key/value pairs for people and tools (`paddock
	// ls --label`); paddock gives them no meaning. Default none.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Tenant is the tenant the VM belongs to (paddock tenant ls): its
	// quotas count the VM, and its managed networks are the tenant's
	// own. Default DefaultTenant.
	Tenant string `yaml:"tenant" json:"tenant"`
	// From names a template (paddock template ls): the VM boots the
	// template's kernel and initrd, and its first disk is a qcow2
	// overlay of its own on the template's root disk (then kernel and
	// initrd must be left out, and cmdline holds only arguments added to
	// the template's). Default none.
	From string `yaml:"from,omitempty" json:"from,omitempty"`
	// RootSize is the size of the root disk of a VM made from a template,
	// at least the template's (the guest grows its file system to fill
	// it on boot). Default the template's size.
	RootSize ByteSize `yaml:"root_size,omitempty" json:"root_size,omitempty"`
	// CPUs is the number of vCPUs. Default 1.
	CPUs int `yaml:"cpus" json:"cpus"`
	// Memory is guest RAM, a whole number of MiB. Default 512MiB.
	Memory ByteSize `yaml:"memory" json:"memory"`
	// Kernel is the absolute path of the Linux kernel (bzImage or ELF
	// vmlinux): Load resolves relative paths against the YAML file's
	// directory and expands ~. Required, unless From is set.
	Kernel string `yaml:"kernel" json:"kernel"`
	// Initrd is the absolute path of an initial ramdisk, or empty.
	Initrd string `yaml:"initrd,omitempty" json:"initrd,omitempty"`
	// Cmdline is the kernel command line. Default "console=ttyS0"; with
	// From, arguments added to the template's command line, default none.
	Cmdline string `yaml:"cmdline" json:"cmdline"`
	// Disks are virtio-blk disks, in the order the guest sees them
	// (/dev/vda, /dev/vdb, ...). Default none.
	Disks []Disk `yaml:"disks,omitempty" json:"disks,omitempty"`
	// NICs are virtio-net network interfaces. Default none.
	NICs []NIC `yaml:"nics,omitempty" json:"nics,omitempty"`
	// Ports forward host ports to the VM's address on its first managed
	// network (nics[].network). Default none.
	Ports []Port `yaml:"ports,omitempty" json:"ports,omitempty"`
	// RNG gives the guest a virtio-rng entropy device fed by the host's
	// random number generator. Default false.
	RNG bool `yaml:"rng,omitempty" json:"rng,omitempty"`
	// Console says where the guest's serial console goes.
	Console Console `yaml:"console" json:"console"`
	// OnReboot says what a guest reboot does. Default exit.
	OnReboot RebootAction `yaml:"on_reboot" json:"on_reboot"`
	// Restart says whether a managed VM's VMM boots the guest again after
	// it crashes or stops by itself. Default no.
	Restart RestartPolicy `yaml:"restart" json:"restart"`
	// Backend chooses the hypervisor. Default native.
	Backend Backend `yaml:"backend" json:"backend"`
	// Libvirt configures the libvirt backend; ignored by the native one.
	Libvirt Libvirt `yaml:"libvirt,omitempty" json:"libvirt,omitzero"`

	// CloudInit gives the guest a cloud-init NoCloud seed volume
	// (cloudinit.go). Default true when user, ssh_keys or user_data is
	// set, else false.
	CloudInit bool `yaml:"cloud_init,omitempty" json:"cloud_init,omitempty"`
	// User is the guest user cloud-init creates, with sudo and the SSH
	// keys. Default DefaultUser() with cloud_init.
	User string `yaml:"user,omitempty" json:"user,omitempty"`
	// SSHKeys are SSH public keys, or paths of public key files (resolved
	// like kernel), authorized for User. paddock's own key is added at
	// create.
	SSHKeys []string `yaml:"ssh_keys,omitempty" json:"ssh_keys,omitempty"`
	// UserData is a cloud-config document passed on to cloud-init with
	// paddock's own. Default none.
	UserData string `yaml:"user_data,omitempty" json:"user_data,omitempty"`

	// src records where fields were written; nil for a VM built in Go.
	src *source
}

// Console says where the guest's serial console goes. In YAML it is either
// a mapping {mode, log, log_size, log_keep} or the mode alone: `console:
// log`.
type Console struct {
	// Mode is stdio, log or none. Default stdio.
	Mode ConsoleMode `yaml:"mode" json:"mode"`
	// Log is an absolute file path console output is appended to, or empty
	// (then mode log uses the VM's state directory).
	Log string `yaml:"log,omitempty" json:"log,omitempty"`
	// LogSize bounds each console log file (Log, and a managed VM's
	// console.log): a file that reaches it is rotated to FILE.1. Default
	// DefaultConsoleLogSize.
	LogSize ByteSize `yaml:"log_size" json:"log_size"`
	// LogKeep is how many rotated files (FILE.1 ... FILE.N) are kept.
	// Default DefaultConsoleLogKeep.
	LogKeep int `yaml:"log_keep" json:"log_keep"`
}

// ConsoleMode is where console output goes.
type ConsoleMode string

// Console modes.
const (
	// ConsoleStdio connects the console to the terminal, interactively.
	ConsoleStdio ConsoleMode = "stdio"
	// ConsoleLog writes console output only to the log file.
	ConsoleLog ConsoleMode = "log"
	// ConsoleNone discards console output.
	ConsoleNone ConsoleMode = "none"
)

// RebootAction is what happens when the guest reboots.
type RebootAction string

// Reboot actions.
const (
	// RebootExit stops the VM: paddock exits as if the guest powered off.
	RebootExit RebootAction = "exit"
	// RebootRestart boots the VM again from its kernel.
	RebootRestart RebootAction = "restart"
)

// RestartPolicy says when paddock boots a VM again after it ended without
// being asked to (paddock stop and paddock kill never trigger a restart).
type RestartPolicy string

// Restart policies.
const (
	// RestartNo never restarts: a crash leaves the VM crashed.
	RestartNo RestartPolicy = "no"
	// RestartOnFailure restarts the VM after a crash, with a backoff.
	RestartOnFailure RestartPolicy = "on-failure"
	// RestartAlways restarts the VM whenever it ends by itself: after a
	// crash, a power-off from inside the guest, or a reboot with
	// on_reboot: exit.
	RestartAlways RestartPolicy = "always"
)

// Backend is the hypervisor that runs the VM.
type Backend string

// Backends.
const (
	// BackendNative is paddock's own VMM on /dev/kvm.
	BackendNative Backend = "native"
	// BackendLibvirt runs the VM as a libvirt domain.
	BackendLibvirt Backend = "libvirt"
)

// Libvirt configures the libvirt backend: which libvirt host runs the
// VM (Host or URI, not both) and how.
type Libvirt struct {
	// Host names a libvirt host paddock knows (paddock host ls), or is
	// LibvirtAutoHost: the reachable host with the most free memory.
	// Default LibvirtLocalHost when the backend is libvirt and URI is
	// empty.
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
	// URI is a libvirt connection URI, e.g. qemu:///system or
	// qemu+ssh://user@host/system, for a host paddock was not told about.
	URI string `yaml:"uri,omitempty" json:"uri,omitempty"`
	// Type is the domain type: LibvirtKVM, LibvirtQEMU (TCG emulation),
	// or LibvirtAuto (KVM where the host has it). Default auto.
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
}

// libvirt.host and libvirt.type values.
const (
	// LibvirtLocalHost is this machine's system libvirtd (qemu:///system)
	// unless paddock host add says otherwise.
	LibvirtLocalHost = "local"
	// LibvirtAutoHost picks the reachable host with the most free memory.
	LibvirtAutoHost = "auto"
	// LibvirtAuto, LibvirtKVM and LibvirtQEMU are the domain types.
	LibvirtAuto = "auto"
	LibvirtKVM  = "kvm"
	LibvirtQEMU = "qemu"
)

// FillDefaults sets every field the YAML file left out to its default. A
// field written explicitly keeps its value, even a zero one (`cpus: 0` stays
// 0 for Validate to report); for a VM built in Go, zero means "not set".
func (vm *VM) FillDefaults() {
	if vm.Tenant == "" && !vm.written("tenant") {
		vm.Tenant = DefaultTenant
	}
	if vm.CPUs == 0 && !vm.written("cpus") {
		vm.CPUs = DefaultCPUs
	}
	if vm.Memory == 0 && !vm.written("memory") {
		vm.Memory = DefaultMemory
	}
	if vm.Cmdline == "" && !vm.written("cmdline") && vm.From == "" {
		vm.Cmdline = DefaultCmdline
	}
	if vm.Console.Mode == "" && !vm.written("console.mode") {
		vm.Console.Mode = ConsoleStdio
	}
	if vm.Console.LogSize == 0 && !vm.written("console.log_size") {
		vm.Console.LogSize = DefaultConsoleLogSize
	}
	if vm.Console.LogKeep == 0 && !vm.written("console.log_keep") {
		vm.Console.LogKeep = DefaultConsoleLogKeep
	}
	if vm.OnReboot == "" && !vm.written("on_reboot") {
		vm.OnReboot = RebootExit
	}
	if vm.Restart == "" && !vm.written("restart") {
		vm.Restart = RestartNo
	}
	if vm.Backend == "" && !vm.written("backend") {
		vm.Backend = BackendNative
	}
	if vm.Backend == BackendLibvirt {
		if vm.Libvirt.Host == "" && vm.Libvirt.URI == "" && !vm.written("libvirt.host") && !vm.written("libvirt.uri") {
			vm.Libvirt.Host = LibvirtLocalHost
		}
		if vm.Libvirt.Type == "" && !vm.written("libvirt.type") {
			vm.Libvirt.Type = LibvirtAuto
		}
	}
	vm.fillDeviceDefaults()
	vm.fillCloudInitDefaults()
}
