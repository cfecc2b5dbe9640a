{{- /*
  Definitions shared by the templates. Each container definition renders one
  YAML list item at column 0; the templates place them under a list key.
*/ -}}

{{- define "tandem.resources" -}}
{{- $r := . -}}
{{- if or $r.CPU $r.Memory $r.CPULimit $r.MemoryLimit }}
resources:
  {{- if or $r.CPU $r.Memory }}
  requests:
    {{- if $r.CPU }}
    cpu: {{ toJSON $r.CPU }}
    {{- end }}
    {{- if $r.Memory }}
    memory: {{ toJSON $r.Memory }}
    {{- end }}
  {{- end }}
  {{- if or $r.CPULimit $r.MemoryLimit }}
  limits:
    {{- if $r.CPULimit }}
    cpu: {{ toJSON $r.CPULimit }}
    {{- end }}
    {{- if $r.MemoryLimit }}
    memory: {{ toJSON $r.MemoryLimit }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end }}

{{- /* The pod's name and namespace, which the node ID is built from. */ -}}
{{- define "tandem.podEnv" }}
env:
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}

{{- /* Agent and proxy: the proxy UID (exempt from capture), nothing else. */ -}}
{{- define "tandem.restricted" }}
securityContext:
  runAsUser: {{ .Const.ProxyUID }}
  runAsGroup: {{ .Const.ProxyGID }}
  runAsNonRoot: true
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{- /* Startup probes poll fast and long: the pod's own containers wait on them. */ -}}
{{- /* Masks the service-account token directory with an empty one: the
       API server mounts the pod's token into every container without a
       mount there, and neither Envoy, which parses untrusted traffic, nor
       the capture step needs the API. The agent has its own token. */ -}}
{{- define "tandem.maskToken" }}
- name: {{ .Const.RunVolume }}
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  subPath: no-token
  readOnly: true
{{- end }}

{{- define "tandem.probe" }}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
{{- if .startup }}
periodSeconds: 1
failureThreshold: 600
{{- else }}
periodSeconds: 2
failureThreshold: 3
{{- end }}
{{- end }}

{{- /* tandem-init: installs the capture rules, then exits. Root with
       NET_ADMIN and NET_RAW only, for the length of one command. */ -}}
{{- define "tandem.init" }}
- name: {{ .Const.InitContainer }}
  image: {{ toJSON .AgentImage }}
  command:
  - {{ .Const.AgentBinary }}
  - init
  args:
  {{- include "tandem.captureArgs" . | indent 2 }}
  {{- include "tandem.resources" .AgentResources | indent 2 }}
  securityContext:
    runAsUser: 0
    runAsGroup: 0
    runAsNonRoot: false
    privileged: false
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities:
      add: ["NET_ADMIN", "NET_RAW"]
      drop: ["ALL"]
  volumeMounts:
  {{- include "tandem.maskToken" . | indent 2 }}
{{- end }}

{{- /* tandem-agent. Data: dict "V" Values "Proxyless" bool. Native: a
       sidecar whose startup probe holds back the containers after it.
       Classic: its postStart hook blocks the kubelet until Envoy (or, when
       proxyless, the agent itself) is ready, so the app starts after it. */ -}}
{{- define "tandem.agent" }}
{{- $v := .V }}
- name: {{ $v.Const.AgentContainer }}
  image: {{ toJSON $v.AgentImage }}
  {{- if $v.NativeSidecar }}
  restartPolicy: Always
  {{- end }}
  command:
  - {{ $v.Const.AgentBinary }}
  - run
  args:
  - {{ toJSON (print "--log-level=" $v.LogLevel) }}
  {{- if $v.WatchNamespaces }}
  - {{ toJSON (print "--watch-namespaces=" $v.WatchNamespaces) }}
  {{- end }}
  {{- if .Proxyless }}
  - --proxyless
  {{- end }}
  {{- if $v.DiscoveryAddress }}
  - {{ toJSON (print "--discovery-address=" $v.DiscoveryAddress) }}
  {{- end }}
  {{- include "tandem.podEnv" . | indent 2 }}
  - name: {{ $v.Const.NodeNameEnv }}
    valueFrom:
      fieldRef:
        fieldPath: spec.nodeName
  - name: {{ $v.Const.ZoneEnv }}
    valueFrom:
      fieldRef:
        fieldPath: metadata.labels['topology.kubernetes.io/zone']
  {{- if $v.DiscoveryAddress }}
  - name: {{ $v.Const.DiscoveryCAEnv }}
    value: {{ toJSON $v.DiscoveryCA }}
  {{- end }}
  ports:
  - name: tandem-health
    containerPort: {{ $v.Const.AgentHealthPort }}
    protocol: TCP
  - name: tandem-metrics
    containerPort: {{ $v.Const.AgentMetricsPort }}
    protocol: TCP
  {{- if $v.NativeSidecar }}
  startupProbe:
    {{- if .Proxyless }}
    {{- include "tandem.probe" (dict "path" "/ready" "port" $v.Const.AgentHealthPort "startup" true) | indent 4 }}
    {{- else }}
    {{- include "tandem.probe" (dict "path" "/healthz" "port" $v.Const.AgentHealthPort "startup" true) | indent 4 }}
    {{- end }}
  {{- else }}
  lifecycle:
    postStart:
      exec:
        command: [{{ toJSON $v.Const.AgentBinary }}, "wait"]
  {{- end }}
  readinessProbe:
    {{- include "tandem.probe" (dict "path" "/ready" "port" $v.Const.AgentHealthPort "startup" false) | indent 4 }}
  {{- include "tandem.resources" $v.AgentResources | indent 2 }}
  {{- include "tandem.restricted" $v | indent 2 }}
  volumeMounts:
  - name: {{ $v.Const.RunVolume }}
    mountPath: {{ $v.Const.RunDir }}
  - name: {{ $v.Const.TokenVolume }}
    mountPath: /var/run/secrets/kubernetes.io/serviceaccount
    readOnly: true
{{- end }}

{{- /* tandem-proxy: upstream Envoy, configured by the agent over the socket. */ -}}
{{- define "tandem.proxy" }}
- name: {{ .Const.ProxyContainer }}
  image: {{ toJSON .ProxyImage }}
  {{- if .NativeSidecar }}
  restartPolicy: Always
  {{- end }}
  command:
  - envoy
  args:
  - --config-yaml
  - {{ toJSON .EnvoyBootstrap }}
  - --service-node
  - $(POD_NAME).$(POD_NAMESPACE)
  - --service-cluster
  - $(POD_NAMESPACE)
  - --log-level
  - {{ toJSON .LogLevel }}
  - --disable-hot-restart
  - --drain-time-s
  - "5"
  {{- include "tandem.podEnv" . | indent 2 }}
  {{- if .NativeSidecar }}
  startupProbe:
    {{- include "tandem.probe" (dict "path" "/ready" "port" .Const.AgentHealthPort "startup" true) | indent 4 }}
  {{- end }}
  readinessProbe:
    {{- include "tandem.probe" (dict "path" "/ready" "port" .Const.AgentHealthPort "startup" false) | indent 4 }}
  {{- include "tandem.resources" .ProxyResources | indent 2 }}
  {{- include "tandem.restricted" . | indent 2 }}
  volumeMounts:
  - name: {{ .Const.RunVolume }}
    mountPath: {{ .Const.RunDir }}
  {{- include "tandem.maskToken" . | indent 2 }}
{{- end }}

{{- /* tandem-run holds the xDS socket; tandem-token is the agent's own
       API credential, present even when the pod turns automounting off,
       and with discovery its token of discovery's audience. */ -}}
{{- define "tandem.volumes" }}
- name: {{ .Const.RunVolume }}
  emptyDir:
    medium: Memory
- name: {{ .Const.TokenVolume }}
  projected:
    sources:
    - serviceAccountToken:
        path: token
        expirationSeconds: 3607
    {{- if .DiscoveryAddress }}
    - serviceAccountToken:
        audience: {{ .Const.DiscoveryAudience }}
        path: {{ .Const.DiscoveryTokenPath }}
        expirationSeconds: 3607
    {{- end }}
    - configMap:
        name: kube-root-ca.crt
        items:
        - key: ca.crt
          path: ca.crt
    - downwardAPI:
        items:
        - path: namespace
          fieldRef:
            apiVersion: v1
            fieldPath: metadata.namespace
{{- end }}
