{{/* Names, labels and the pipeline file as the pods see it. */}}

{{- define "kstream-lab.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "kstream-lab.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "name" "enricher") */}}
{{- define "kstream-lab.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "kstream-lab.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "kstream-lab.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}{{ .Values.serviceAccount.name | default (include "kstream-lab.fullname" .) }}
{{- else -}}{{ .Values.serviceAccount.name | default "default" }}{{- end -}}
{{- end -}}

{{/* The schedules file (YAML text). */}}
{{- define "kstream-lab.schedules" -}}
{{ .Values.pipeline.schedulesFile | default (.Files.Get "files/schedules.yaml") }}
{{- end -}}

{{/*
The pipeline file the pods read, as YAML: the given (or the chart's) file, with what a pod needs over
it: apps and metrics servers bind every address (the kubelet's probes and Prometheus dial the pod's
IP), the enricher finds the customer service by its Service name, the sink writes to sink.target;
then pipeline.overrides.
*/}}
{{- define "kstream-lab.pipeline" -}}
{{- $file := .Values.pipeline.file | default (.Files.Get "files/orders.yaml") | fromYaml -}}
{{- $w := $file.workers | default dict -}}
{{- $csPort := ($w.customer_service | default dict).port | default 8601 -}}
{{- $pod := dict
  "customer_service" (dict "host" "0.0.0.0")
  "order_service" (dict "host" "0.0.0.0")
  "enricher" (dict "metrics_host" "0.0.0.0" "customer_service_url" (printf "http://%s-customer-service:%v" (include "kstream-lab.fullname" .) $csPort))
  "aggregator" (dict "metrics_host" "0.0.0.0")
  "sink" (dict "metrics_host" "0.0.0.0") -}}
{{- if .Values.sink.target -}}{{- $_ := set $pod.sink "target" .Values.sink.target -}}{{- end -}}
{{- $_ := set $file "workers" (mergeOverwrite $w $pod) -}}
{{- toYaml (mergeOverwrite $file (deepCopy .Values.pipeline.overrides)) -}}
{{- end -}}

{{/* A component's port: an app's HTTP port, a worker's metrics port, from the pipeline file. */}}
{{- define "kstream-lab.port" -}}
{{- $cfg := index .pipeline.workers (.name | replace "-" "_") | default dict -}}
{{- $defaults := dict "customer-service" 8601 "order-service" 8600 "enricher" 9401 "aggregator" 9402 "sink" 9403 -}}
{{- if eq .kind "app" -}}{{ $cfg.port | default (index $defaults .name) | int }}
{{- else -}}{{ $cfg.metrics_port | default (index $defaults .name) | int }}{{- end -}}
{{- end -}}

{{/* The SASL user of a pipeline principal: "User:order-enricher" -> "order-enricher". */}}
{{- define "kstream-lab.user" -}}
{{- trimPrefix "User:" . -}}
{{- end -}}

{{/* Seconds in a duration of the pipeline's form ("90s", "1h30m", "2d"; a bare number is ms). */}}
{{- define "kstream-lab.seconds" -}}
{{- $text := toString . -}}
{{- if regexMatch "^[0-9]+$" $text -}}{{ div (atoi $text) 1000 }}
{{- else -}}
{{- $units := dict "ms" 0.001 "s" 1 "m" 60 "h" 3600 "d" 86400 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d)" $text -1 -}}
{{- $n := regexFind "^[0-9]+" . -}}
{{- $total = addf $total (mulf (float64 $n) (index $units (trimPrefix $n .))) -}}
{{- end -}}
{{- floor $total | int -}}
{{- end -}}
{{- end -}}

{{/*
The environment and volumes every Kafka-facing pod gets: where Kafka and the registry are, how to log
in (secrets as files, the *_FILE settings). Call with (dict "root" $ "user" "order-enricher").
*/}}
{{- define "kstream-lab.env" -}}
{{- $v := .root.Values -}}
- name: KSTREAM_BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: KSTREAM_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- if $v.kafka.saslMechanism }}
- name: KSTREAM_SASL_MECHANISM
  value: {{ $v.kafka.saslMechanism | quote }}
{{- end }}
{{- if and .user $v.saslPasswords.secretName }}
- name: KSTREAM_SASL_USERNAME
  value: {{ .user | quote }}
- name: KSTREAM_SASL_PASSWORD_FILE
  value: /var/run/secrets/kstream-lab/sasl/password
{{- end }}
{{- if $v.kafka.caSecret.name }}
- name: KSTREAM_SSL_CA_LOCATION
  value: /var/run/secrets/kstream-lab/kafka-ca/{{ $v.kafka.caSecret.key }}
{{- end }}
{{- if $v.kafka.clientConfig }}
- name: KSTREAM_CLIENT_CONFIG
  value: {{ toJson $v.kafka.clientConfig | quote }}
{{- end }}
{{- if $v.tracing.exporter }}
- name: OTEL_TRACES_EXPORTER
  value: {{ $v.tracing.exporter | quote }}
{{- if $v.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $v.tracing.otlpEndpoint | quote }}
{{- end }}
{{- end }}
- name: KSTREAM_SCHEMA_REGISTRY_URL
  value: {{ $v.schemaRegistry.url | quote }}
{{- if $v.schemaRegistry.user }}
- name: KSTREAM_SCHEMA_REGISTRY_USER
  value: {{ $v.schemaRegistry.user | quote }}
{{- end }}
{{- if $v.schemaRegistry.passwordSecret.name }}
- name: KSTREAM_SCHEMA_REGISTRY_PASSWORD_FILE
  value: /var/run/secrets/kstream-lab/registry/{{ $v.schemaRegistry.passwordSecret.key }}
{{- end }}
{{- if $v.schemaRegistry.caSecret.name }}
- name: KSTREAM_SCHEMA_REGISTRY_CA_LOCATION
  value: /var/run/secrets/kstream-lab/registry-ca/{{ $v.schemaRegistry.caSecret.key }}
{{- end }}
{{- end -}}

{{/* Mounts: the pipeline file beside the image's schemas (the hook's own copy: it precedes the
release's ConfigMap), writable state, the secrets. (dict "root" $ "user" USER ["hook" true]) */}}
{{- define "kstream-lab.volumeMounts" -}}
{{- $v := .root.Values -}}
- name: pipeline
  mountPath: /app/pipelines/orders.yaml
  subPath: orders.yaml
{{- if not .hook }}
- name: pipeline
  mountPath: /app/pipelines/schedules.yaml
  subPath: schedules.yaml
{{- end }}
- name: state
  mountPath: /var/lib/kstream-lab
- name: tmp
  mountPath: /tmp
{{- if and .user $v.saslPasswords.secretName }}
- name: sasl
  mountPath: /var/run/secrets/kstream-lab/sasl
  readOnly: true
{{- end }}
{{- if $v.kafka.caSecret.name }}
- name: kafka-ca
  mountPath: /var/run/secrets/kstream-lab/kafka-ca
  readOnly: true
{{- end }}
{{- if $v.schemaRegistry.passwordSecret.name }}
- name: registry
  mountPath: /var/run/secrets/kstream-lab/registry
  readOnly: true
{{- end }}
{{- if $v.schemaRegistry.caSecret.name }}
- name: registry-ca
  mountPath: /var/run/secrets/kstream-lab/registry-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "kstream-lab.volumes" -}}
{{- $v := .root.Values -}}
- name: pipeline
  configMap:
    name: {{ include "kstream-lab.fullname" .root }}-{{ ternary "hook-pipeline" "pipeline" (.hook | default false) }}
- name: state
{{- if .state }}
{{ toYaml .state | indent 2 }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: tmp
  emptyDir: {}
{{- if and .user $v.saslPasswords.secretName }}
- name: sasl
  secret:
    secretName: {{ $v.saslPasswords.secretName }}
    defaultMode: 0440
    items:
      - {key: {{ .user | quote }}, path: password}
{{- end }}
{{- if $v.kafka.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ $v.kafka.caSecret.name }}
    defaultMode: 0444
    items:
      - {key: {{ $v.kafka.caSecret.key | quote }}, path: {{ $v.kafka.caSecret.key | quote }}}
{{- end }}
{{- if $v.schemaRegistry.passwordSecret.name }}
- name: registry
  secret:
    secretName: {{ $v.schemaRegistry.passwordSecret.name }}
    defaultMode: 0440
    items:
      - {key: {{ $v.schemaRegistry.passwordSecret.key | quote }}, path: {{ $v.schemaRegistry.passwordSecret.key | quote }}}
{{- end }}
{{- if $v.schemaRegistry.caSecret.name }}
- name: registry-ca
  secret:
    secretName: {{ $v.schemaRegistry.caSecret.name }}
    defaultMode: 0444
    items:
      - {key: {{ $v.schemaRegistry.caSecret.key | quote }}, path: {{ $v.schemaRegistry.caSecret.key | quote }}}
{{- end }}
{{- end -}}

{{/* Pod settings shared by every pod (the hook's too: so no service account, which it precedes). */}}
{{- define "kstream-lab.podSpecCommon" -}}
automountServiceAccountToken: false
securityContext:
{{ toYaml .Values.podSecurityContext | indent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{/* "true" when the pipeline's sink is Kafka Connect (workers.sink.kind: connect): no sink pods, the hook applies the connector. */}}
{{- define "kstream-lab.connectSink" -}}
{{- $sink := (include "kstream-lab.pipeline" . | fromYaml).workers.sink | default dict -}}
{{- if eq ($sink.kind | default "python") "connect" -}}
{{- if not .Values.connect.url -}}{{- fail "workers.sink.kind is connect: set connect.url to your Kafka Connect cluster's REST URL" -}}{{- end -}}
true
{{- end -}}
{{- end -}}
