package posixshim

// readAt reads len(p) bytes of d at off, which need not be sector aligned:
// an unaligned read goes through a bounce buffer of whole sectors.
func readAt(d Disk, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	if off%sectorSize == 0 && len(p)%sectorSize == 0 {
		_, err := d.ReadAt(p, off)
		return err
	}
	start, end := off&^(sectorSize-1), int64(roundUp(uint64(off)+uint64(len(p)), sectorSize))
	buf := make([]byte, end-start)
	if _, err := d.ReadAt(buf, start); err != nil {
		return err
	}
	copy(p, buf[off-start:])
	return nil
}

// writeAt writes p to d at off, which need not be sector aligned: the
// partial sectors at either end are read, patched and written back with the
// rest in one write. The caller serialises writeAt against other writes of
// the same sectors.
func writeAt(d Disk, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	if off%sectorSize == 0 && len(p)%sectorSize == 0 {
		_, err := d.WriteAt(p, off)
		return err
	}
	start, end := off&^(sectorSize-1), int64(roundUp(uint64(off)+uint64(len(p)), sectorSize))
	buf := make([]byte, end-start)
	if off != start {
		if _, err := d.ReadAt(buf[:sectorSize], start); err != nil {
			return err
		}
	}
	if tail := end - sectorSize; (off+int64(len(p)))%sectorSize != 0 && (tail != start || off == start) {
		if _, err := d.ReadAt(buf[tail-start:], tail); err != nil {
			return err
		}
	}
	copy(buf[off-start:], p)
	_, err := d.WriteAt(buf, start)
	return err
}

// zeroAt writes n zero bytes to d at off (any alignment).
func zeroAt(d Disk, off, n int64) error {
	for n > 0 {
		k := min(n, chunkSize)
		if err := writeAt(d, make([]byte, k), off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}
