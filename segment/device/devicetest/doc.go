// Package devicetest is the conformance suite every device.Device
// implementation must pass, in the manner of testing/fstest and go-fuse's
// posixtest. It only reads and writes through the Device interface and
// never inspects an implementation's internals.
//
// # Usage
//
//	func TestMem(t *testing.T) {
//		devicetest.Run(t, func(t *testing.T) device.Device {
//			return device.NewMem(8<<20, 4096)
//		})
//	}
package devicetest
