//go:build tools

// Package tools pins the controllers e2e/gitops-tools builds; it is never compiled into anything.
package tools

import (
	_ "github.com/fluxcd/kustomize-controller"
	_ "github.com/fluxcd/source-controller"
)
