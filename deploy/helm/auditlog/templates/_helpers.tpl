{{- define "auditlog.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "auditlog.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "ingest") */}}
{{- define "auditlog.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "auditlog.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Values that would make a deployment that cannot work: rendering stops with the reason. */}}
{{- define "auditlog.required" -}}
{{- $_ := required "kafka.bootstrapServers is required (deploy/README.md)" .Values.kafka.bootstrapServers -}}
{{- $_ := required "postgresql.existingSecret is required: a Secret with the database URL (deploy/README.md)" .Values.postgresql.existingSecret -}}
{{- $_ := required "log.origin is required, e.g. audit.example.com (deploy/README.md)" .Values.log.origin -}}
{{- $_ := required "signing.existingSecret is required: a Secret with the signing key (deploy/README.md)" .Values.signing.existingSecret -}}
{{- if lt (int .Values.kafka.partitions) 1 -}}
{{- fail "kafka.partitions must be the events topic's partition count (at least 1)" -}}
{{- end -}}
{{- if and .Values.sealer.keda.enabled (gt (int .Values.sealer.keda.minReplicas) (int .Values.kafka.partitions)) -}}
{{- fail "sealer.keda.minReplicas cannot exceed kafka.partitions: a sealer past the partition count owns nothing" -}}
{{- end -}}
{{- end -}}

{{/* Pod-level security: non-root, the runtime's default seccomp profile. */}}
{{- define "auditlog.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "auditlog.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Environment every service shares: (dict "root" $ "extra" .Values.ingest.env) */}}
{{- define "auditlog.env" -}}
{{- $v := .root.Values -}}
- name: AUDITLOG_KAFKA_BOOTSTRAP
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: AUDITLOG_TOPIC
  value: {{ $v.kafka.topic | quote }}
{{- $tls := $v.kafka.tls.secretName }}
{{- with $v.kafka.sasl.secretName }}
- name: AUDITLOG_KAFKA_SECURITY_PROTOCOL
  value: {{ ternary "SASL_SSL" "SASL_PLAINTEXT" (ne $tls "") | quote }}
- name: AUDITLOG_KAFKA_SASL_MECHANISM
  value: {{ $v.kafka.sasl.mechanism | quote }}
- name: AUDITLOG_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: username
- name: AUDITLOG_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: password
{{- else }}
{{- if $tls }}
- name: AUDITLOG_KAFKA_SECURITY_PROTOCOL
  value: "SSL"
{{- end }}
{{- end }}
{{- if $tls }}
- name: AUDITLOG_KAFKA_SSL_CAFILE
  value: /etc/auditlog/kafka-tls/ca
{{- if $v.kafka.tls.clientCertificate }}
- name: AUDITLOG_KAFKA_SSL_CERTFILE
  value: /etc/auditlog/kafka-tls/cert
- name: AUDITLOG_KAFKA_SSL_KEYFILE
  value: /etc/auditlog/kafka-tls/key
{{- end }}
{{- end }}
- name: AUDITLOG_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.postgresql.existingSecret }}
      key: {{ $v.postgresql.urlKey }}
- name: AUDITLOG_ORIGIN
  value: {{ $v.log.origin | quote }}
- name: AUDITLOG_HASH_SCHEME
  value: {{ $v.log.hashScheme | quote }}
- name: AUDITLOG_LOG_LEVEL
  value: {{ $v.log.level | quote }}
{{- if $v.schemas }}
- name: AUDITLOG_SCHEMAS_FILE
  value: /etc/auditlog/config/schemas.json
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes every service pod mounts: a writable /tmp, the config, and TLS material. */}}
{{- define "auditlog.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
- name: config
  configMap:
    name: {{ include "auditlog.fullname" . }}
{{- with .Values.postgresql.tlsSecretName }}
- name: pg-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.kafka.tls.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "auditlog.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: config
  mountPath: /etc/auditlog/config
  readOnly: true
{{- if .Values.postgresql.tlsSecretName }}
- name: pg-tls
  mountPath: /etc/auditlog/pg-tls
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.secretName }}
- name: kafka-tls
  mountPath: /etc/auditlog/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* Scheduling and pod-wide settings of one component: (dict "root" $ "c" .Values.ingest) */}}
{{- define "auditlog.podCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "auditlog.podSecurityContext" .root | nindent 2 }}
  fsGroup: {{ .root.Values.securityContext.runAsGroup }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component }}
# Replicas spread over nodes where they can: one node lost takes one of them, not all.
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "auditlog.selector" (dict "root" $.root "component" .) | nindent 8 }}
{{- end }}
{{- end -}}

{{/* The sealers' consumer group (AUDITLOG_SEALER_GROUP_ID), which KEDA reads the lag of. */}}
{{- define "auditlog.sealerGroup" -}}
{{- $group := "auditlog-sealer" -}}
{{- range concat .Values.extraEnv .Values.sealer.env -}}
{{- if eq .name "AUDITLOG_SEALER_GROUP_ID" -}}{{- $group = .value -}}{{- end -}}
{{- end -}}
{{- $group -}}
{{- end -}}
