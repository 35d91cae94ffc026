package kvm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// insn is one hand-encoded 16-bit instruction and its Intel-syntax text as
// GNU objdump prints it, so TestProgramsDisassemble can check the bytes.
type insn struct {
	code []byte
	asm  string
}

// program is a real-mode guest program loaded at its origin.
type program struct {
	name   string
	origin int
	insns  []insn
}

// bytes returns the machine code.
func (p program) bytes() []byte {
	var b []byte
	for _, i := range p.insns {
		b = append(b, i.code...)
	}
	return b
}

// end returns the address just past the program.
func (p program) end() int { return p.origin + len(p.bytes()) }

// stubProgram is the interrupt stub installStubs puts at stubBase+16*v.
func stubProgram(v byte) program {
	return program{"stub", stubBase + 16*int(v), []insn{
		{[]byte{0xB0, v}, fmt.Sprintf("mov al,%#x", v)},
		{[]byte{0xE6, 0x11}, "out 0x11,al"}, // exit: which vector arrived
		{[]byte{0xB0, 0x20}, "mov al,0x20"},
		{[]byte{0xE6, 0x20}, "out 0x20,al"}, // non-specific EOI to the master PIC
		{[]byte{0xE6, 0x12}, "out 0x12,al"}, // exit: EOI done
		{[]byte{0xF4}, "hlt"},
	}}
}

// allPrograms lists every program the tests run.
func allPrograms() []program {
	return []program{exitProgram, haltProgram, spinProgram, windowProgram, ioeventProgram, ioeventMMIOProgram,
		irqProgram(nil), irqProgram(pitSetup), stubProgram(0x30), stubProgram(0x0F), benchProgram, readonlyProgram}
}

// TestProgramsDisassemble checks every hand-encoded guest program against
// GNU objdump's disassembly, an independent decoder.
func TestProgramsDisassemble(t *testing.T) {
	objdump := testenv.RequireTool(t, "objdump", "binutils") // to disassemble the guest programs
	line := regexp.MustCompile(`^\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(.*)$`)
	space := regexp.MustCompile(`\s+`)
	for _, p := range allPrograms() {
		t.Run(p.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "prog.bin")
			if err := os.WriteFile(bin, p.bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(objdump, "-D", "-b", "binary", "-m", "i8086", "-M", "intel",
				fmt.Sprintf("--adjust-vma=%#x", p.origin), bin).Output()
			if err != nil {
				t.Fatalf("objdump: %v", err)
			}
			var got []string
			for _, l := range strings.Split(string(out), "\n") {
				if m := line.FindStringSubmatch(l); m != nil {
					got = append(got, space.ReplaceAllString(strings.TrimSpace(m[2]), " "))
				}
			}
			if len(got) != len(p.insns) {
				t.Fatalf("objdump decoded %d instructions, the program has %d:\n%s", len(got), len(p.insns), out)
			}
			for i, in := range p.insns {
				if got[i] != in.asm {
					t.Errorf("instruction %d (% x): objdump says %q, the program says %q", i, in.code, got[i], in.asm)
				}
			}
		})
	}
}
