#!/bin/sh
# /etc/acpi/PWRF/00000080 of the hello guest: busybox acpid runs it when
# the ACPI power button is pressed (paddock stop): power off cleanly.
echo "hello: ACPI power button pressed: powering off" > /dev/console
echo "@@LAB l2.power-button" > /dev/console
sync
poweroff -f
