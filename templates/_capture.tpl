{{- /*
  Traffic capture, in the mode the injector resolved (.Capture): "init"
  installs the rules from the pod (tandem-init, root with NET_ADMIN);
  "cni" leaves that to the node's tandem-cni plugin, which reads the flags
  of tandem-validate, and tandem-validate checks the result unprivileged.
*/ -}}

{{- define "tandem.capture" }}
{{- if eq .Capture "cni" }}
{{- include "tandem.validate" . }}
{{- else }}
{{- include "tandem.init" . }}
{{- end }}
{{- end }}

{{- /* The capture flags of `agent init` and `agent validate`, one list item each. */ -}}
{{- define "tandem.captureArgs" }}
- --proxy-port={{ .Const.ProxyOutboundPort }}
- --proxy-uid={{ .Const.ProxyUID }}
- --proxy-gid={{ .Const.ProxyGID }}
{{- if .ExcludeOutboundPorts }}
- {{ toJSON (print "--exclude-outbound-ports=" .ExcludeOutboundPorts) }}
{{- end }}
{{- if .ExcludeOutboundCIDRs }}
- {{ toJSON (print "--exclude-outbound-cidrs=" .ExcludeOutboundCIDRs) }}
{{- end }}
{{- if .IncludeOutboundCIDRs }}
- {{ toJSON (print "--include-outbound-cidrs=" .IncludeOutboundCIDRs) }}
{{- end }}
{{- end }}

{{- /* tandem-validate: no privilege at all (Pod Security "restricted"), and
       not the proxy's user, so its test connection is captured like the
       app's. It exits once it has seen a connection redirected. */ -}}
{{- define "tandem.validate" }}
- name: {{ .Const.ValidateContainer }}
  image: {{ toJSON .AgentImage }}
  command:
  - {{ .Const.AgentBinary }}
  - validate
  args:
  {{- include "tandem.captureArgs" . | indent 2 }}
  {{- include "tandem.resources" .AgentResources | indent 2 }}
  securityContext:
    runAsUser: {{ .Const.ValidateUID }}
    runAsGroup: {{ .Const.ValidateGID }}
    runAsNonRoot: true
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities:
      drop: ["ALL"]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
  {{- include "tandem.maskToken" . | indent 2 }}
{{- end }}
