//go:build tools

// Package tools pins the helm CLI this module builds (chart lint/template tests).
package tools

import _ "helm.sh/helm/v4/cmd/helm"
