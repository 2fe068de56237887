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

{{/* gpudra's global logging flags (before the subcommand), as container args: nothing at the
defaults; debug is -v (verbosity 4), unless logVerbosity asks for more. */}}
{{- define "gpudra.logArgs" -}}
{{- $v := int .Values.logVerbosity }}
{{- if and .Values.debug (le $v 4) }}
- -v
{{- else if gt $v 0 }}
- --v={{ $v }}
{{- end }}
{{- if eq .Values.logFormat "json" }}
- --log-format=json
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

{{- define "gpudra.devicePlugin.name" -}}
{{- printf "%s-device-plugin" (include "gpudra.fullname" .) -}}
{{- end -}}

{{/* The device plugin's kubelet and CDI dirs: its own, else the kubelet plugin's. */}}
{{- define "gpudra.devicePlugin.kubeletDir" -}}
{{- trimSuffix "/" (default .Values.kubeletPlugin.kubeletDir .Values.devicePlugin.kubeletDir) -}}
{{- end -}}

{{- define "gpudra.devicePlugin.cdiDir" -}}
{{- default .Values.kubeletPlugin.cdiDir .Values.devicePlugin.cdiDir -}}
{{- end -}}

{{/* Where both node daemons lock the GPUs they serve (the settings' default gpu_lock_path). */}}
{{- define "gpudra.gpuLockDir" -}}
{{- printf "%s/gpudra/gpus" (trimSuffix "/" .Values.kubeletPlugin.kubeletDir) -}}
{{- end -}}

{{/* Non-empty when two GPU sets (all, none, 0-3, 0,2,5-6) share a GPU:
     include "gpudra.gpuSetsOverlap" (list "0-3" "2,4") */}}
{{- define "gpudra.gpuSetsOverlap" -}}
{{- $a := index . 0 | toString | trim -}}
{{- $b := index . 1 | toString | trim -}}
{{- if or (eq $a "none") (eq $b "none") -}}
{{- else if or (eq $a "all") (eq $b "all") (eq $a $b) -}}
true
{{- else -}}
{{- range $pa := splitList "," $a -}}
{{- $ra := splitList "-" (trim $pa) -}}
{{- range $pb := splitList "," $b -}}
{{- $rb := splitList "-" (trim $pb) -}}
{{- if and (le (atoi (first $ra)) (atoi (last $rb))) (le (atoi (first $rb)) (atoi (last $ra))) -}}
true
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* With both node daemons enabled: refuse GPU sets or lock dirs that would let a GPU be
     served twice (the daemons refuse it again at start, with what they hold). */}}
{{- define "gpudra.checkGpuSplit" -}}
{{- if and .Values.kubeletPlugin.enabled .Values.devicePlugin.enabled -}}
{{- if include "gpudra.gpuSetsOverlap" (list .Values.kubeletPlugin.gpus .Values.devicePlugin.gpus) -}}
{{- fail (printf "kubeletPlugin.gpus and devicePlugin.gpus must name disjoint GPU sets when both are enabled (e.g. 0-3 and 4-7): a GPU is served by one of them, never both; overlaps the chart cannot see are refused by the daemons at start (now %q and %q)" .Values.kubeletPlugin.gpus .Values.devicePlugin.gpus) -}}
{{- end -}}
{{- if ne (include "gpudra.devicePlugin.kubeletDir" .) (trimSuffix "/" .Values.kubeletPlugin.kubeletDir) -}}
{{- fail (printf "devicePlugin.kubeletDir (%s) must be kubeletPlugin.kubeletDir (%s) when both are enabled: both lock their GPUs in <kubeletDir>/gpudra/gpus (leave devicePlugin.kubeletDir empty)" .Values.devicePlugin.kubeletDir .Values.kubeletPlugin.kubeletDir) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* devicePlugin.config's flags that disagree with the devicePlugin values the daemon is
     given (the values win in the daemon, so a disagreement would be silently dropped). */}}
{{- define "gpudra.devicePlugin.checkConfigFlags" -}}
{{- $dp := .Values.devicePlugin -}}
{{- $flags := default dict $dp.config.flags -}}
{{- $plugin := default dict $flags.plugin -}}
{{- $given := list -}}
{{- if hasKey $flags "migStrategy" -}}
{{- $given = append $given (list "flags.migStrategy" $flags.migStrategy "migStrategy" $dp.migStrategy) -}}
{{- end -}}
{{- if hasKey $plugin "deviceIDStrategy" -}}
{{- $given = append $given (list "flags.plugin.deviceIDStrategy" $plugin.deviceIDStrategy "deviceIdStrategy" $dp.deviceIdStrategy) -}}
{{- end -}}
{{- if hasKey $plugin "passDeviceSpecs" -}}
{{- $given = append $given (list "flags.plugin.passDeviceSpecs" $plugin.passDeviceSpecs "passDeviceSpecs" $dp.passDeviceSpecs) -}}
{{- end -}}
{{- if hasKey $plugin "deviceListStrategy" -}}
{{- $theirs := $plugin.deviceListStrategy -}}
{{- if kindIs "string" $theirs }}{{ $theirs = list $theirs }}{{ end -}}
{{- $given = append $given (list "flags.plugin.deviceListStrategy" (sortAlpha $theirs) "deviceListStrategy" (sortAlpha $dp.deviceListStrategy)) -}}
{{- end -}}
{{- range $given -}}
{{- if ne (toJson (index . 1)) (toJson (index . 3)) -}}
{{- fail (printf "devicePlugin.config.%s is %s but devicePlugin.%s is %s: set devicePlugin.%s to %s (the chart passes the devicePlugin values to the daemon, and they win over the file's flags)" (index . 0) (toJson (index . 1)) (index . 2) (toJson (index . 3)) (index . 2) (toJson (index . 1))) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Real mode (mock.enabled false) of a node daemon pod, shared by the kubelet plugin and the
     device plugin: NVML from the host's driver root (or a RuntimeClass), the host's /dev,
     privileged; mock mode: root with MKNOD only, read-only root filesystem. */}}
{{- define "gpudra.nodeDaemon.runtimeClassName" -}}
{{- if and (not .Values.mock.enabled) .Values.kubeletPlugin.real.runtimeClassName }}
runtimeClassName: {{ .Values.kubeletPlugin.real.runtimeClassName }}
{{- end }}
{{- end -}}

{{/* include "gpudra.nodeDaemon.securityContext" (list . .Values.<component>.securityContext) */}}
{{- define "gpudra.nodeDaemon.securityContext" -}}
{{- $root := index . 0 -}}
{{- $override := index . 1 -}}
{{- if $override }}
{{- toYaml $override }}
{{- else if $root.Values.mock.enabled }}
runAsUser: 0
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
# MKNOD only: stand-in /dev/nvidia* nodes (/dev/null's numbers) for CDI to inject
capabilities: {drop: [ALL], add: [MKNOD]}
seccompProfile: {type: RuntimeDefault}
{{- else }}
privileged: true
{{- end }}
{{- end -}}

{{- define "gpudra.nodeDaemon.driverEnv" -}}
{{- if and (not .Values.mock.enabled) (not .Values.kubeletPlugin.real.runtimeClassName) }}
- name: LD_LIBRARY_PATH
  value: /driver-root/usr/lib64:/driver-root/usr/lib/x86_64-linux-gnu:/driver-root/usr/lib/aarch64-linux-gnu
{{- end }}
{{- end -}}

{{- define "gpudra.nodeDaemon.driverMounts" -}}
{{- if not .Values.mock.enabled }}
- name: dev
  mountPath: /dev
{{- if not .Values.kubeletPlugin.real.runtimeClassName }}
- name: driver-root
  mountPath: /driver-root
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "gpudra.nodeDaemon.driverVolumes" -}}
{{- if not .Values.mock.enabled }}
- name: dev
  hostPath:
    path: /dev
    type: Directory
{{- if not .Values.kubeletPlugin.real.runtimeClassName }}
- name: driver-root
  hostPath:
    path: {{ .Values.kubeletPlugin.real.nvidiaDriverRoot }}
    type: Directory
{{- end }}
{{- end }}
{{- end -}}
