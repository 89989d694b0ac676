// Package main is the cloudfs command: the CLI verbs and, with issue 3, the
// daemon's wiring. It only calls cli.NewRootCommand; nothing imports it.
package main
