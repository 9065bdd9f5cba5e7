//go:build linux

package store

import "syscall"

// readStreams is the number of ranged reads of one object a directory store at path
// serves best at once: 1 on a local file system, 4 on a network or parallel one (see
// dirStore.ReadStreams); 4 when the file system cannot be told.
func readStreams(path string) int {
	var s syscall.Statfs_t
	if err := syscall.Statfs(path, &s); err != nil {
		return 4
	}
	if networkFS(uint32(s.Type)) {
		return 4
	}
	return 1
}

// networkFS reports whether a file system type (statfs's f_type) is a network or
// parallel file system, whose reads wait for a round trip.
func networkFS(magic uint32) bool {
	switch magic {
	case 0x6969, // NFS
		0x0bd00bd0, // Lustre
		0x47504653, // GPFS (Spectrum Scale)
		0x00c36400, // CephFS
		0x19830326, // BeeGFS
		0xaad7aaea, // PanFS
		0x01161970, // GFS2
		0x7461636f, // OCFS2
		0x5346414f, // AFS
		0x6b414653, // kAFS
		0x73757245, // Coda
		0x01021997, // 9P
		0x20030528, // OrangeFS
		0xfe534d42, // SMB2
		0xff534d42, // CIFS
		0x0000517b, // SMB
		0x65735546: // FUSE (sshfs, s3fs, DAOS's dfuse, ...)
		return true
	}
	return false
}
