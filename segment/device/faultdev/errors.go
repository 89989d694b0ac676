package faultdev

import "errors"

// ErrInjected is returned, possibly wrapped, by every call a Fault makes
// fail. Test for it with errors.Is.
var ErrInjected = errors.New("faultdev: injected fault")
