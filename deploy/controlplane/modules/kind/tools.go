//go:build tools

// Package tools pins the kind CLI this module builds (make kind-up / kind-e2e; needs Docker).
package tools

import _ "sigs.k8s.io/kind"
