//go:build tools

// Package tools pins the helm command e2e/cluster builds; it is never compiled into anything.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
