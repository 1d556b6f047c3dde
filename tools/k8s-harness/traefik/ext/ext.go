// Package ext stands in for Traefik's extension hook module
// (github.com/traefik/traefik/dynamic/ext), which Traefik's go.mod takes
// from a nested directory of its repository and no module proxy serves.
// Upstream's open-source build uses it with empty types too: they add no
// field to Traefik's dynamic configuration.
package ext

// HTTP is embedded in Traefik's dynamic HTTP configuration.
type HTTP struct{}

// Router is embedded in Traefik's dynamic router configuration.
type Router struct{}
