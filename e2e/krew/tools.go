//go:build tools

// Package tools pins the krew command e2e/cluster builds; it is never compiled into anything.
package tools

import (
	_ "sigs.k8s.io/krew/cmd/krew"
)
