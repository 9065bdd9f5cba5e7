//go:build race

package remote_test

// raceEnabled: the race detector is on (the simulations run fewer seeds).
const raceEnabled = true
