// Command ckp inspects, verifies, extracts and repairs ckp checkpoint files.
//
// Every command but repair opens the file read-only: it never takes the writer's lock,
// never writes, and works on a file that a running program is saving to (it shows the
// versions complete at the moment it opened the file). Run `ckp help` for the list of
// commands and `ckp help CMD` for each one.
//
// Exit codes: 0 success, 1 damage found (verify), 2 usage or I/O errors.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
