{{- /*
Bearer tokens (values `auth`, docs/deploy.md). auth.gateway: WMA_GATEWAY_TOKEN of
the gateway, which its callers (and the helm test pod) send; auth.members:
WMA_MS_TOKEN of every model server, which the gateway sends them. Each token is a
value (the chart's Secret <fullname>-auth holds it) or a key of an existing Secret.
*/ -}}

{{/* The part's settings, refused when enabled without a token: (dict "root" . "part" "gateway") */}}
{{- define "wma.authPart" -}}
{{- $a := index .root.Values.auth .part -}}
{{- if and $a.enabled (not $a.existingSecret) (not $a.token) -}}
{{- fail (printf "auth.%s.enabled needs auth.%s.token or auth.%s.existingSecret" .part .part .part) -}}
{{- end -}}
{{- toYaml $a -}}
{{- end }}

{{/* Whether the chart creates the Secret <fullname>-auth (a token given as a value). */}}
{{- define "wma.authSecretCreated" -}}
{{- $root := . -}}
{{- range $part := list "gateway" "members" -}}
{{- $a := include "wma.authPart" (dict "root" $root "part" $part) | fromYaml -}}
{{- if and $a.enabled (not $a.existingSecret) }}yes{{ end -}}
{{- end -}}
{{- end }}

{{/* One env entry NAME from the part's Secret, when the part is enabled:
     (dict "root" . "part" "members" "name" "WMA_MS_TOKEN") */}}
{{- define "wma.authEnv" -}}
{{- $a := include "wma.authPart" (dict "root" .root "part" .part) | fromYaml -}}
{{- if $a.enabled }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      {{- if $a.existingSecret }}
      name: {{ $a.existingSecret }}
      key: {{ $a.key }}
      {{- else }}
      name: {{ include "wma.fullname" .root }}-auth
      key: {{ .part }}-token
      {{- end }}
{{- end }}
{{- end }}
