#!/bin/sh
# /init of the nested KVM lab's L1 VM (test/lab). Mounts the kernel file
# systems, loads kvm-amd and the network modules, then runs the scenario's
# steps listed in /lab/steps.list ("NNN NAME TIMEOUT INTERACTIVE") and
# powers off. Everything the host harness parses is an "@@LAB key value"
# line on the console.
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
# Go programs (paddock) print every goroutine when they crash or get SIGQUIT.
export GOTRACEBACK=all
mount -t proc proc /proc
up=$(cut -d' ' -f1 /proc/uptime)
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
hostname lab
ip link set lo up 2>/dev/null

LAB_QUIET=0
[ -f /lab/config ] && . /lab/config
mark() {
	[ "$LAB_QUIET" = 1 ] || echo "@@LAB $*"
}
mark l1.init "$up"

release=$(uname -r)
# kvm: ignore MSRs L1's KVM does not know instead of injecting #GP into
# L2. A stock L2 kernel probes the AMD performance counters (unknown to
# KVM on this TCG CPU); injecting the #GP through TCG's emulated SVM froze
# L1 outright in roughly one boot in four, with QEMU and paddock alike.
while read -r m; do
	case "$m" in
	*/kvm.ko) params="ignore_msrs=1 report_ignored_msrs=0" ;;
	*) params= ;;
	esac
	insmod "/lib/modules/$release/$m" $params || echo "@@LAB l1.insmod-failed $m"
done < "/lib/modules/$release/paddock.load"
if [ -c /dev/kvm ]; then
	mark l1.kvm ok
else
	echo "@@LAB l1.kvm missing"
fi
# L2 shutdowns (triple faults), counted per step: a VMM in L1 gets each
# as a KVM_EXIT_SHUTDOWN (8) exit to user space, which the tracepoint
# kvm:kvm_userspace_exit records (lab.StepResult.L2Shutdowns).
l2trace=
tr=/sys/kernel/tracing
ev=$tr/events/kvm/kvm_userspace_exit
if mount -t tracefs tracefs $tr 2>/dev/null && [ -d $ev ] &&
	echo 'reason == 8' > $ev/filter && echo 1 > $ev/enable; then
	l2trace=$tr/trace
else
	echo "@@LAB l1.l2trace missing"
fi
mark l1.ready "$(cut -d' ' -f1 /proc/uptime)"

# A heartbeat, so the host can tell a frozen L1 from a quiet step (see
# lab.Options.FreezeTimeout), on the port the host gave it
# (LAB_HEARTBEAT): on the console it would cut L2's lines. Not in quiet
# (interactive) runs.
heartbeat() {
	while :; do sleep 10; echo "@@LAB l1.hb $(cut -d' ' -f1 /proc/uptime)"; done
}
if [ "$LAB_QUIET" = 1 ]; then
	:
elif [ -n "$LAB_HEARTBEAT" ]; then
	heartbeat > "$LAB_HEARTBEAT" &
else
	heartbeat &
fi

# run_step N NAME TIMEOUT: run /lab/steps/N.sh in its own session with
# stdin from /dev/null; a watchdog kills its whole process group after
# TIMEOUT seconds.
run_step() {
	rm -f /run/lab-timeout
	setsid sh "/lab/steps/$1.sh" < /dev/null &
	pid=$!
	(
		sleep "$3" &
		sp=$!
		trap 'kill $sp 2>/dev/null; exit 0' TERM
		wait $sp
		: > /run/lab-timeout
		# A wedged paddock says why before it goes: a VMM writes its
		# machine's state (vCPU exits, UART, virtio queues) to its
		# vmm.log on SIGUSR1, printed here, then every process dumps
		# its goroutines' stacks (SIGQUIT).
		if killall -USR1 paddock 2>/dev/null; then
			sleep 1
			for f in /var/lib/paddock/vms/*/vmm.log; do
				[ -f "$f" ] || continue
				echo "== $f (end)"
				tail -n 40 "$f"
			done
			killall -QUIT paddock 2>/dev/null
			sleep 2
		fi
		kill -9 -$pid 2>/dev/null
	) &
	wd=$!
	wait $pid
	rc=$?
	kill -TERM $wd 2>/dev/null
	wait $wd
	kill -9 -$pid 2>/dev/null
	[ -f /run/lab-timeout ] && mark step.timeout "$2 $3"
	return $rc
}

while read -r n name timeout interactive; do
	[ -n "$l2trace" ] && : > $l2trace # empties the trace buffer
	mark step.begin "$name"
	if [ "$interactive" = 1 ]; then
		# The console becomes the step's controlling terminal.
		setsid cttyhack sh "/lab/steps/$n.sh" < /dev/console
		rc=$?
	else
		run_step "$n" "$name" "$timeout"
		rc=$?
	fi
	[ -n "$l2trace" ] && mark step.l2-shutdowns "$name $(grep -c kvm_userspace_exit $l2trace)"
	mark step.end "$name $rc"
	last_rc=$rc
done < /lab/steps.list

mark l1.done "$(cut -d' ' -f1 /proc/uptime)"
sync
# An attached (quiet) run has no markers to report the last step's
# status with: QEMU's isa-debug-exit device (port 0xf4) ends L1 with exit
# status 2*N+1 for the byte N written to it (lab.StepExitError); a status
# above 127 is reported as 127, which the 8-bit exit status can carry.
if [ "$LAB_QUIET" = 1 ] && [ "${last_rc:-0}" != 0 ]; then
	[ "$last_rc" -gt 127 ] && last_rc=127
	printf "\\$(printf %o "$last_rc")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
fi
poweroff -f
