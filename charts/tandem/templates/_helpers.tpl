{{/*
Names are fixed, never derived from the release: agents find discovery and
the API server finds the webhook by name (docs/helm.md).
*/}}

{{/* Helm's labels, added to every object's own labels (not to selectors or pod templates). */}}
{{- define "tandem.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The injector's labels: what config/ gives its objects, and Helm's. */}}
{{- define "tandem.labels" -}}
app.kubernetes.io/name: tandem-injector
app.kubernetes.io/part-of: tandem
{{ include "tandem.helmLabels" . }}
{{- end }}

{{/* An image reference from {repository, tag}; an empty tag is the chart's appVersion. */}}
{{- define "tandem.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- if hasPrefix "sha256:" $tag -}}
{{ .image.repository }}@{{ $tag }}
{{- else -}}
{{ .image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{- define "tandem.injectorImage" -}}
{{ include "tandem.image" (dict "image" .Values.injector.image "root" .) }}
{{- end }}

{{- define "tandem.agentImage" -}}
{{ include "tandem.image" (dict "image" .Values.sidecar.agent.image "root" .) }}
{{- end }}

{{- define "tandem.proxyImage" -}}
{{ include "tandem.image" (dict "image" .Values.sidecar.proxy.image "root" .) }}
{{- end }}

{{/* The images the injector writes into pods, as config/manager's configMapGenerator holds them. */}}
{{- define "tandem.imagesData" -}}
{{- dict "agent-image" (include "tandem.agentImage" .) "proxy-image" (include "tandem.proxyImage" .) | toJson -}}
{{- end }}

{{/*
The images ConfigMap's name carries a hash of its content, computed as
kustomize computes it for config/manager's configMapGenerator (whose
encoding leaves the name empty), so a new image rolls the injector out and
both installs name it alike.
*/}}
{{- define "tandem.imagesConfigMap" -}}
{{- $hash := dict "data" (include "tandem.imagesData" . | fromJson) "kind" "ConfigMap" "name" "" | toJson | sha256sum | trunc 10 -}}
tandem-images-{{ $hash | replace "0" "g" | replace "1" "h" | replace "3" "k" | replace "a" "m" | replace "e" "t" }}
{{- end }}

{{/* Whether the injector serves the webhook. */}}
{{- define "tandem.webhook" -}}
{{- if eq .Values.injection.mode "webhook" }}true{{ end -}}
{{- end }}

{{/* The Secret of the injector's serving certificate (webhook and discovery). */}}
{{- define "tandem.certSecret" -}}
{{- if eq .Values.injection.mode "webhook" }}tandem-webhook-cert{{ else }}tandem-discovery-cert{{ end -}}
{{- end }}

{{/* The native-sidecar setting: auto (webhook: from the API server's version) or true/false. */}}
{{- define "tandem.nativeSidecar" -}}
{{- $v := .Values.sidecar.nativeSidecar | toString -}}
{{- if and (eq $v "auto") (eq .Values.injection.mode "policy") -}}
true
{{- else -}}
{{ $v }}
{{- end -}}
{{- end }}

{{/* A resource quantity of the sidecars' resources, "" when unset. */}}
{{- define "tandem.quantity" -}}
{{- $v := index .resources .kind | default dict | dig .name "" -}}
{{- $v | toString -}}
{{- end }}

{{/*
The sidecars' defaults as the injector's flags name them, which are also
the keys of the admission policies' ConfigMap.
*/}}
{{- define "tandem.sidecarSettings" -}}
{{- $p := .Values.sidecar.proxy.resources | default dict -}}
{{- $a := .Values.sidecar.agent.resources | default dict -}}
{{- $q := dict -}}
{{- range $who, $r := dict "proxy" $p "agent" $a -}}
{{- range $kind, $suffix := dict "requests" "" "limits" "-limit" -}}
{{- range $res := list "cpu" "memory" -}}
{{- $_ := set $q (printf "%s-%s%s" $who $res $suffix) (include "tandem.quantity" (dict "resources" $r "kind" $kind "name" $res)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $_ := set $q "template" .Values.sidecar.template -}}
{{- $_ := set $q "native-sidecar" (.Values.sidecar.nativeSidecar | toString) -}}
{{- $_ := set $q "sidecar-log-level" .Values.sidecar.logLevel -}}
{{- $q | toJson -}}
{{- end }}

{{/* The order config/manager passes the sidecars' defaults in. */}}
{{- define "tandem.sidecarFlags" -}}
template native-sidecar sidecar-log-level proxy-cpu proxy-memory proxy-cpu-limit proxy-memory-limit agent-cpu agent-memory agent-cpu-limit agent-memory-limit
{{- end }}
