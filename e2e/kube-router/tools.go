//go:build tools

// Package tools pins the kube-router command e2e/cluster builds (its firewall only: the node's NetworkPolicy
// implementation); it is never compiled into anything.
package tools

import (
	_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
)
