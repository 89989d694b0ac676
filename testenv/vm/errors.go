package vm

import "errors"

// Exit statuses of the runner that are not the program's own.
const (
	// ExitTimeout: the run reached its wall-clock limit and QEMU was killed.
	ExitTimeout = 124
	// ExitVMFailure: the VM could not be prepared, did not boot, panicked,
	// or ended without reporting the program's exit status.
	ExitVMFailure = 125
)

var (
	// ErrTimeout is returned by Run when the run reaches its time limit.
	ErrTimeout = errors.New("vm: time limit reached")
	// ErrGuest is returned by Run when the guest ends without the
	// program's exit status: a boot failure, a kernel panic, an agent error.
	ErrGuest = errors.New("vm: guest failed")
)

// ExitCode maps an error of Run or Prepare to the runner's exit status.
func ExitCode(err error) int {
	if errors.Is(err, ErrTimeout) {
		return ExitTimeout
	}
	return ExitVMFailure
}
