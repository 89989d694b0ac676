//go:build race

package extent

// raceEnabled shrinks the slow memory test under the race detector.
const raceEnabled = true
