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

{{/* The model's headless Service: one DNS address per ready pod, for the gateway's discovery. */}}
{{- define "wma.modelHeadlessName" -}}
{{- printf "%s-pods" (include "wma.modelServiceName" .) | trunc 63 | trimSuffix "-" -}}
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

{{/* The ids (comma-separated) of the models that run the effort backend, after modelDefaults. */}}
{{- define "wma.effortModelIds" -}}
{{- $root := . -}}
{{- $ids := list -}}
{{- range $entry := .Values.models -}}
{{- $m := include "wma.model" (dict "root" $root "entry" $entry) | fromYaml -}}
{{- if eq $m.backend "effort" -}}{{- $ids = append $ids $m.id -}}{{- end -}}
{{- end -}}
{{- join ", " $ids -}}
{{- end -}}

{{/*
Where the calibrator bundle comes from: values (calibrators.bundle), configMap
or secret (an existing object the operator made), or mock (the chart's
files/mock.json, only when every model runs the mock backend). Every way of
installing real detectors with mock calibrators fails here, naming the values.
*/}}
{{- define "wma.bundleSource" -}}
{{- $c := .Values.calibrators -}}
{{- $set := list -}}
{{- range $key := list "bundle" "existingConfigMap" "existingSecret" -}}
{{- if get $c $key -}}{{- $set = append $set (printf "calibrators.%s" $key) -}}{{- end -}}
{{- end -}}
{{- if gt (len $set) 1 -}}
{{- fail (printf "calibrators: set only one of calibrators.bundle, calibrators.existingConfigMap and calibrators.existingSecret (got %s)" (join ", " $set)) -}}
{{- end -}}
{{- $effort := include "wma.effortModelIds" . -}}
{{- if $c.bundle -}}
{{- if and $effort (eq (sha256sum $c.bundle) (.Files.Get "files/mock.json" | sha256sum)) -}}
{{- fail (printf "calibrators.bundle: this is the chart's mock bundle, which fits only the mock backend; models %s run the effort backend: pass the production bundle (--set-file calibrators.bundle=bundle.json)" $effort) -}}
{{- end -}}
values
{{- else if or $c.existingConfigMap $c.existingSecret -}}
{{- if not $c.sha256 -}}
{{- fail (printf "calibrators.sha256: required with %s (the sha256 of the bundle it holds under key %q: the gateway refuses a bundle with other bytes)" (first $set) $c.key) -}}
{{- end -}}
{{- if $c.existingConfigMap -}}configMap{{- else -}}secret{{- end -}}
{{- else if $effort -}}
{{- fail (printf "calibrators.bundle: models %s run the effort backend and need the production calibrator bundle (the chart's mock bundle fits only the mock backend). Pass it with --set-file calibrators.bundle=bundle.json (made by `wma calibrate fit` or `wma calibrate import-legacy`), or reference an existing object holding it: calibrators.existingConfigMap or calibrators.existingSecret (key calibrators.key) with its calibrators.sha256" $effort) -}}
{{- else -}}
mock
{{- end -}}
{{- end -}}

{{/* The calibrator bundle text the chart ships (source values or mock); empty for a referenced object. */}}
{{- define "wma.bundle" -}}
{{- $source := include "wma.bundleSource" . -}}
{{- if eq $source "values" -}}
{{- .Values.calibrators.bundle -}}
{{- else if eq $source "mock" -}}
{{- .Files.Get "files/mock.json" -}}
{{- end -}}
{{- end -}}

{{/*
The shipped bundle, parsed, after the checks the gateway makes at start (format,
thresholds, a calibrator per model with the model's aggregator); returns JSON.
Empty object for a referenced bundle, which the chart cannot read.
*/}}
{{- define "wma.bundleDoc" -}}
{{- $text := include "wma.bundle" . -}}
{{- if not $text -}}
{{- "{}" -}}
{{- else -}}
{{- $root := . -}}
{{- $doc := fromJson $text -}}
{{- if hasKey $doc "Error" -}}
{{- fail (printf "calibrators.bundle: not a calibrator bundle: %s" (get $doc "Error")) -}}
{{- end -}}
{{- if ne (toString $doc.format) "wma-calibrators/v1" -}}
{{- fail (printf "calibrators.bundle: format must be \"wma-calibrators/v1\", got %q" (toString $doc.format)) -}}
{{- end -}}
{{- $thr := default dict $doc.thresholds -}}
{{- if not (and (kindIs "float64" $thr.t_low) (kindIs "float64" $thr.t_high)) -}}
{{- fail "calibrators.bundle: thresholds.t_low and thresholds.t_high must be numbers" -}}
{{- end -}}
{{- $calibrated := default dict $doc.models -}}
{{- range $entry := .Values.models -}}
{{- $m := include "wma.model" (dict "root" $root "entry" $entry) | fromYaml -}}
{{- if not (hasKey $calibrated $m.id) -}}
{{- fail (printf "calibrators.bundle: has no calibrator for model %q (it has %s)" $m.id (keys $calibrated | sortAlpha | join ", ")) -}}
{{- end -}}
{{- $fitted := toString (get (get $calibrated $m.id) "aggregator") -}}
{{- if and $m.aggregator (ne $m.aggregator $fitted) -}}
{{- fail (printf "models[%s].aggregator: %q differs from the bundle's %q (the calibrator was fitted on that aggregator)" $m.id $m.aggregator $fitted) -}}
{{- end -}}
{{- end -}}
{{- toJson $doc -}}
{{- end -}}
{{- end -}}

{{/* The bundle's sha256 the gateway pins: of the shipped bytes, or the operator's for a referenced object. */}}
{{- define "wma.bundleSha256" -}}
{{- $source := include "wma.bundleSource" . -}}
{{- if or (eq $source "configMap") (eq $source "secret") -}}
{{- lower .Values.calibrators.sha256 -}}
{{- else -}}
{{- $sum := include "wma.bundle" . | sha256sum -}}
{{- if and .Values.calibrators.sha256 (ne (lower .Values.calibrators.sha256) $sum) -}}
{{- fail (printf "calibrators.sha256: pinned %s but the bundle's bytes have sha256 %s" .Values.calibrators.sha256 $sum) -}}
{{- end -}}
{{- $sum -}}
{{- end -}}
{{- end -}}

{{/* The projected-volume source of the bundle, mounted at calibrators/bundle.json next to the config. */}}
{{- define "wma.bundleVolumeSource" -}}
{{- $source := include "wma.bundleSource" . -}}
{{- $c := .Values.calibrators -}}
{{- if eq $source "secret" -}}
secret:
  name: {{ $c.existingSecret }}
  items:
    - key: {{ $c.key }}
      path: calibrators/bundle.json
{{- else -}}
configMap:
  name: {{ if eq $source "configMap" }}{{ $c.existingConfigMap }}{{ else }}{{ include "wma.fullname" . }}-calibrators{{ end }}
  items:
    - key: {{ if eq $source "configMap" }}{{ $c.key }}{{ else }}bundle.json{{ end }}
      path: calibrators/bundle.json
{{- end -}}
{{- end -}}

{{/*
The thresholds the gateway of one track uses: gateway.config.thresholds (merged
with canary.config), else the shipped bundle's. Call with (dict "root" $ "track"
T); returns YAML {t_low, t_high, from: config|bundle}, the gateway's own words (thresholds.source).
*/}}
{{- define "wma.thresholdsInForce" -}}
{{- $cfg := include "wma.gatewayConfig" . | fromYaml -}}
{{- $c := .root.Values.calibrators -}}
{{- if $cfg.thresholds -}}
{{- toYaml (dict "t_low" $cfg.thresholds.t_low "t_high" $cfg.thresholds.t_high "from" "config") -}}
{{- else if or $c.existingConfigMap $c.existingSecret -}}
{{- fail (printf "gateway.config.thresholds: required with %s: the chart cannot read a referenced bundle, so give the thresholds it holds ({t_low: .., t_high: ..}); the gateway then uses these" (ternary "calibrators.existingConfigMap" "calibrators.existingSecret" (not (empty $c.existingConfigMap)))) -}}
{{- else -}}
{{- $doc := include "wma.bundleDoc" .root | fromJson -}}
{{- toYaml (dict "t_low" $doc.thresholds.t_low "t_high" $doc.thresholds.t_high "from" "bundle") -}}
{{- end -}}
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
{{- $headless := include "wma.modelHeadlessName" (dict "root" $root "id" $m.id) -}}
{{- $model := dict "id" $m.id "discover" (printf "dns://%s.%s.svc.%s:%v" $headless $root.Release.Namespace $root.Values.clusterDomain $m.port) "protocol" $m.protocol "timeout_s" (float64 $m.timeoutS) -}}
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

{{/*
One egress rule of the gateway's NetworkPolicy to the server behind a URL (the
OTLP collector, the legacy model server). A policy cannot name a DNS name, so
the peers are the operator's list (`peers`, named by `value`), else derived
from the URL: an IPv4 address -> that /32; a cluster Service name
(<svc>.<namespace>.svc[.<cluster domain>], or a bare <svc> of the release
namespace) -> that namespace. Anything else fails, naming `value`.
Call with (dict "root" $ "url" U "peers" LIST "value" NAME "what" TEXT); returns YAML.
*/}}
{{- define "wma.egressRuleToUrl" -}}
{{- $u := urlParse .url -}}
{{- $host := regexReplaceAll ":[0-9]+$" $u.host "" -}}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" $u.host) -}}
{{- if not $port -}}{{- $port = ternary "443" "80" (eq $u.scheme "https") -}}{{- end -}}
{{- $peers := .peers -}}
{{- if not $peers -}}
{{- if regexMatch "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$" $host -}}
{{- $peers = list (dict "ipBlock" (dict "cidr" (printf "%s/32" $host))) -}}
{{- else -}}
{{- $namespace := "" -}}
{{- if regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $host -}}
{{- $namespace = .root.Release.Namespace -}}
{{- else if regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.svc(\\..+)?)?$" $host -}}
{{- $namespace = index (splitList "." $host) 1 -}}
{{- else -}}
{{- fail (printf "%s: the gateway's NetworkPolicy cannot reach the %s %s (a policy cannot name a DNS name: only an IPv4 address or a cluster Service name <svc>.<namespace>.svc is derived); list its peers there (NetworkPolicyPeer objects, e.g. an ipBlock), or set networkPolicy.enabled=false" .value .what .url) -}}
{{- end -}}
{{- $peers = list (dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" $namespace))) -}}
{{- end -}}
{{- end -}}
to:
  {{- toYaml $peers | nindent 2 }}
ports:
  - protocol: TCP
    port: {{ $port | int }}
{{- end -}}
