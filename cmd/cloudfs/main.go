package main

import (
	"os"

	"cloudfs/cmd/cloudfs/cli"
)

func main() {
	if err := cli.NewRootCommand().Execute(); err != nil {
		os.Exit(cli.ExitCode(err))
	}
}
