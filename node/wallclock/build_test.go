//go:build !chaosfaults

package wallclock

const skewedBuild = false
