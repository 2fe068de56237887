{{/* Names, labels and the values both components share. */}}

{{- define "gpudra.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "gpudra.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "gpudra.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "gpudra.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gpudra.labels" -}}
app.kubernetes.io/name: {{ include "gpudra.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include "gpudra.selector" (list . "controller") */}}
{{- define "gpudra.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "gpudra.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "gpudra.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "gpudra.kubeletPlugin.name" -}}
{{- printf "%s-kubelet-plugin" (include "gpudra.fullname" .) -}}
{{- end -}}

{{- define "gpudra.controller.name" -}}
{{- printf "%s-controller" (include "gpudra.fullname" .) -}}
{{- end -}}

{{/* The node daemon's ServiceAccount username, as the API server authenticates it. */}}
{{- define "gpudra.kubeletPlugin.user" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "gpudra.kubeletPlugin.name" .) -}}
{{- end -}}

{{/* The controller's ServiceAccount username, as the API server authenticates it. */}}
{{- define "gpudra.controller.user" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "gpudra.controller.name" .) -}}
{{- end -}}

{{/* The API server override (values apiServer), as container env entries. */}}
{{- define "gpudra.apiServerEnv" -}}
{{- with .Values.apiServer.host }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ . | quote }}
{{- end }}
{{- with .Values.apiServer.port }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "gpudra.pluginDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.kubeletPlugin.kubeletDir) .Values.driverName -}}
{{- end -}}

{{- define "gpudra.registryDir" -}}
{{- printf "%s/plugins_registry" (trimSuffix "/" .Values.kubeletPlugin.kubeletDir) -}}
{{- end -}}

{{/* Whether the MutatingAdmissionPolicy API (v1, Kubernetes 1.36+) is served. */}}
{{- define "gpudra.mapSupported" -}}
{{- if and (.Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy") (semverCompare ">=1.36.0-0" .Capabilities.KubeVersion.Version) -}}
true
{{- end -}}
{{- end -}}
