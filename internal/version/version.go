// Package version holds the goray version that every component and driver
// reports, so that a driver built against another goray is refused.
package version

// Version is the goray version. It is a var so that tests can build a
// driver that claims another version (-ldflags -X).
var Version = "0.1.0"
