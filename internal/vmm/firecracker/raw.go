package firecracker

// RawDisksOnly reports that Firecracker takes raw disk images and block
// devices only: the VM service then gives a machine a raw system disk
// made by a storage rootfs backend instead of a qcow2 overlay.
func (d *Driver) RawDisksOnly() bool { return true }

// Accel is "kvm": Firecracker runs guests with KVM and nothing else.
func (d *Driver) Accel() (accel, reason string) {
	return "kvm", "firecracker runs guests with kvm"
}
