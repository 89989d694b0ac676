// Package cli holds the cloudfs command's verbs, one file each (nuke.go,
// check.go, ...), each an options struct with AddFlags and a RunE. Verbs write
// to the command's output streams so tests can capture them, and return
// errors; ExitCode turns an error into the process's exit status.
package cli
