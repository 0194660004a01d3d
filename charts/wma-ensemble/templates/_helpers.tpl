{{/* Names, labels and shared pod fragments of the wma-ensemble chart. */}}

{{- define "wma.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Trimmed to 40 characters so "<fullname>-model-<id>" stays a valid DNS label. */}}
{{- define "wma.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "wma.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "wma.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wma-ensemble
{{- end -}}

{{- define "wma.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wma.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
The labels that tell one component's pods apart: call with
(dict "root" $ "component" NAME), plus "track" (gateway) or "modelId" (model
server) where the objects are per track or per model.
*/}}
{{- define "wma.componentKeys" -}}
app.kubernetes.io/component: {{ .component }}
{{- with .track }}
wma.io/track: {{ . }}
{{- end }}
{{- with .modelId }}
wma.io/model-id: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component (Deployment/PDB selector, pod template, Service selector); arguments of wma.componentKeys. */}}
{{- define "wma.componentSelectorLabels" -}}
{{ include "wma.selectorLabels" .root }}
{{ include "wma.componentKeys" . }}
{{- end -}}

{{/* Metadata labels of one component's objects; arguments of wma.componentKeys. */}}
{{- define "wma.componentLabels" -}}
{{ include "wma.labels" .root }}
{{ include "wma.componentKeys" . }}
{{- end -}}

{{/* Container env entries from a name -> value map (values as strings), in name order. */}}
{{- define "wma.envFromMap" -}}
{{- $entries := list -}}
{{- range $name, $value := . -}}
{{- $entries = append $entries (printf "- name: %s\n  value: %s" $name ($value | toString | quote)) -}}
{{- end -}}
{{- join "\n" $entries -}}
{{- end -}}

{{- define "wma.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wma.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The start of every pod spec (gateway, model servers, helm test pod): the service
account without its token, no service links, the pull secrets and the pod
security context. Call with the root context; indent with nindent.
*/}}
{{- define "wma.podSpecCommon" -}}
serviceAccountName: {{ include "wma.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* A model entry merged over modelDefaults. Call with (dict "root" $ "entry" $entry); returns YAML. */}}
{{- define "wma.model" -}}
{{- $m := mergeOverwrite (deepCopy .root.Values.modelDefaults) (deepCopy .entry) -}}
{{- toYaml $m -}}
{{- end -}}

{{- define "wma.modelServiceName" -}}
{{- printf "%s-model-%s" (include "wma.fullname" .root) .id | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Gateway track resource name: stable -> <fullname>-gateway, canary -> <fullname>-gateway-canary. */}}
{{- define "wma.gatewayName" -}}
{{- if eq .track "stable" -}}
{{- printf "%s-gateway" (include "wma.fullname" .root) -}}
{{- else -}}
{{- printf "%s-gateway-%s" (include "wma.fullname" .root) .track -}}
{{- end -}}
{{- end -}}

{{- define "wma.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion (toString (default "" .image.tag))) -}}
{{- end -}}

{{/* The calibrator bundle bytes: from values (--set-file) or the shipped mock bundle. */}}
{{- define "wma.bundle" -}}
{{- if .Values.calibrators.bundle -}}
{{- .Values.calibrators.bundle -}}
{{- else -}}
{{- .Files.Get "files/mock.json" -}}
{{- end -}}
{{- end -}}

{{- define "wma.bundleSha256" -}}
{{- $sum := include "wma.bundle" . | sha256sum -}}
{{- if and .Values.calibrators.sha256 (ne (lower .Values.calibrators.sha256) $sum) -}}
{{- fail (printf "calibrators.sha256: pinned %s but the bundle's bytes have sha256 %s" .Values.calibrators.sha256 $sum) -}}
{{- end -}}
{{- $sum -}}
{{- end -}}

{{/* OTEL_* environment for one component. Call with (dict "root" $ "service" NAME). */}}
{{- define "wma.otelEnv" -}}
{{- $otel := .root.Values.otel -}}
- name: OTEL_SERVICE_NAME
  value: {{ .service | quote }}
{{- if $otel.endpoint }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $otel.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $otel.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $otel.samplerArg | quote }}
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
- name: OTEL_METRICS_EXPORTER
  value: none
- name: OTEL_LOGS_EXPORTER
  value: none
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ $attrs := list (printf "k8s.namespace.name=%s" .root.Release.Namespace) "k8s.pod.name=$(K8S_POD_NAME)" (printf "service.namespace=%s" .root.Release.Name) -}}
  {{- range $k, $v := $otel.resourceAttributes }}{{ $attrs = append $attrs (printf "%s=%s" $k $v) }}{{ end -}}
  {{ join "," $attrs | quote }}
{{- end -}}

{{/* Writable scratch for a read-only root filesystem. */}}
{{- define "wma.scratchEnv" -}}
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: PYTHONUNBUFFERED
  value: "1"
{{- end -}}

{{/* The gateway track names to render: stable, plus canary when enabled. */}}
{{- define "wma.gatewayTracks" -}}
{{- if .Values.canary.enabled -}}stable canary{{- else -}}stable{{- end -}}
{{- end -}}

{{/*
The gateway config file of one track (the schema `wma gateway --config` reads).
Call with (dict "root" $ "track" "stable"|"canary"); returns YAML.
Model endpoints are the model Services' cluster DNS names; the bundle path is
relative to the config file, so the same file works wherever it is mounted.
*/}}
{{- define "wma.gatewayConfig" -}}
{{- $root := .root -}}
{{- $cfg := deepCopy $root.Values.gateway.config -}}
{{- if eq .track "canary" -}}
{{- $cfg = mergeOverwrite $cfg (deepCopy (default dict $root.Values.canary.config)) -}}
{{- end -}}
{{- $models := list -}}
{{- range $entry := $root.Values.models -}}
{{- $m := include "wma.model" (dict "root" $root "entry" $entry) | fromYaml -}}
{{- $svc := include "wma.modelServiceName" (dict "root" $root "id" $m.id) -}}
{{- $model := dict "id" $m.id "endpoint" (printf "http://%s.%s.svc:%v" $svc $root.Release.Namespace $m.port) "protocol" $m.protocol "timeout_s" (float64 $m.timeoutS) -}}
{{- if $m.aggregator -}}{{- $_ := set $model "aggregator" $m.aggregator -}}{{- end -}}
{{- $models = append $models $model -}}
{{- end -}}
{{- with $cfg.thresholds -}}
{{- if ge (float64 .t_low) (float64 .t_high) -}}
{{- fail (printf "gateway.config.thresholds: t_low (%v) must be below t_high (%v)" .t_low .t_high) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "models" $models -}}
{{- $_ := set $cfg "calibrators" (dict "path" "calibrators/bundle.json" "sha256" (include "wma.bundleSha256" $root)) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The checksum of the config keys (dotted paths) a running gateway cannot hot-reload. */}}
{{- define "wma.gatewayColdChecksum" -}}
{{- $cfg := include "wma.gatewayConfig" . | fromYaml -}}
{{- $reload := default dict $cfg.reload -}}
{{- if and (hasKey $reload "enabled") (not $reload.enabled) -}}
{{- toYaml $cfg | sha256sum -}}
{{- else -}}
{{- $cold := dict -}}
{{- range $key := .root.Values.gateway.coldConfigKeys -}}
{{- $node := $cfg -}}
{{- $found := true -}}
{{- range $part := splitList "." $key -}}
{{- if and $found (kindIs "map" $node) (hasKey $node $part) -}}
{{- $node = get $node $part -}}
{{- else -}}
{{- $found = false -}}
{{- end -}}
{{- end -}}
{{- if $found -}}{{- $_ := set $cold $key $node -}}{{- end -}}
{{- end -}}
{{- toYaml $cold | sha256sum -}}
{{- end -}}
{{- end -}}
