package extent

import "errors"

// ErrCorrupt is returned, wrapped, by [Decode] when its input is not a valid
// map encoding: truncated input, a count larger than the input can hold, a
// zero length, an address out of range, or extents out of order or
// overlapping.
var ErrCorrupt = errors.New("extent: corrupt map encoding")
