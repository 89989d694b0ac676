package devicetest_test

import (
	"testing"

	"cloudfs/segment/device"
	"cloudfs/segment/device/devicetest"
)

// TestRunMem runs the suite against the simplest conforming device.
func TestRunMem(t *testing.T) {
	devicetest.Run(t, func(*testing.T) device.Device {
		return device.NewMem(devicetest.MinBlocks*4096, 4096)
	})
}
