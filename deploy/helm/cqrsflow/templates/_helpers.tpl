{{/* Names and labels. */}}
{{- define "cqrsflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cqrsflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "cqrsflow.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "cqrsflow.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cqrsflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "cqrsflow.selectorLabels" . }}
{{- end -}}

{{- define "cqrsflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cqrsflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Selector labels of one component. The component label is also the
Prometheus job name (ServiceMonitor jobLabel), so the alert rules'
job="api" / "outbox-relay" / "projector" match in Kubernetes too.
Call with (dict "root" $ "component" "api").
*/}}
{{- define "cqrsflow.componentSelector" -}}
{{ include "cqrsflow.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cqrsflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cqrsflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cqrsflow.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* A secretKeyRef env entry: (dict "name" ENV "ref" .Values.x.ySecret). */}}
{{- define "cqrsflow.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name }}
      key: {{ .ref.key }}
{{- end -}}

{{/*
Extra env of a component: a map of NAME: value, sorted. The settings
that hold secrets are refused here: they only come from Secrets.
*/}}
{{- define "cqrsflow.extraEnv" -}}
{{- range $k, $v := . }}
{{- if has $k (list "POSTGRES_URL" "API_KEYS" "KAFKA_SASL_PASSWORD" "ELASTICSEARCH_PASSWORD" "ELASTICSEARCH_API_KEY") }}
{{- fail (printf "env.%s: a secret is never a value; set it through the chart's Secret reference for it" $k) }}
{{- end }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{- define "cqrsflow.postgresEnv" -}}
{{- if not .Values.postgres.urlSecret.name }}
{{- fail "postgres.urlSecret.name is required: POSTGRES_URL holds the password and comes from a Secret" }}
{{- end }}
{{ include "cqrsflow.secretEnv" (dict "name" "POSTGRES_URL" "ref" .Values.postgres.urlSecret) }}
{{- end -}}

{{- define "cqrsflow.kafkaEnv" -}}
{{- $k := .Values.kafka -}}
- name: KAFKA_BROKERS
  value: {{ required "kafka.brokers is required" $k.brokers | quote }}
{{- if $k.topicPrefix }}
- name: TOPIC_PREFIX
  value: {{ $k.topicPrefix | quote }}
{{- end }}
{{- if $k.sasl.mechanism }}
{{- if not (has $k.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512")) }}
{{- fail (printf "kafka.sasl.mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" $k.sasl.mechanism) }}
{{- end }}
- name: KAFKA_SASL_MECHANISM
  value: {{ $k.sasl.mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ required "kafka.sasl.username is required with kafka.sasl.mechanism" $k.sasl.username | quote }}
{{- if not $k.sasl.passwordSecret.name }}
{{- fail "kafka.sasl.passwordSecret.name is required with kafka.sasl.mechanism" }}
{{- end }}
{{ include "cqrsflow.secretEnv" (dict "name" "KAFKA_SASL_PASSWORD" "ref" $k.sasl.passwordSecret) }}
{{- end }}
{{- if $k.tls.enabled }}
- name: KAFKA_TLS
  value: "true"
{{- if $k.tls.caSecret.name }}
- name: KAFKA_TLS_CA_FILE
  value: /etc/cqrsflow/kafka-ca/{{ $k.tls.caSecret.key }}
{{- end }}
{{- if $k.tls.clientCertSecret }}
- name: KAFKA_TLS_CERT_FILE
  value: /etc/cqrsflow/kafka-client/tls.crt
- name: KAFKA_TLS_KEY_FILE
  value: /etc/cqrsflow/kafka-client/tls.key
{{- end }}
{{- if $k.tls.serverName }}
- name: KAFKA_TLS_SERVER_NAME
  value: {{ $k.tls.serverName | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "cqrsflow.elasticsearchEnv" -}}
{{- $e := .Values.elasticsearch -}}
- name: ELASTICSEARCH_URL
  value: {{ required "elasticsearch.url is required" $e.url | quote }}
{{- if $e.indexPrefix }}
- name: INDEX_PREFIX
  value: {{ $e.indexPrefix | quote }}
{{- end }}
{{- if and $e.apiKeySecret.name $e.passwordSecret.name }}
{{- fail "elasticsearch: set apiKeySecret or username/passwordSecret, not both" }}
{{- end }}
{{- if $e.apiKeySecret.name }}
{{ include "cqrsflow.secretEnv" (dict "name" "ELASTICSEARCH_API_KEY" "ref" $e.apiKeySecret) }}
{{- end }}
{{- if $e.passwordSecret.name }}
- name: ELASTICSEARCH_USERNAME
  value: {{ required "elasticsearch.username is required with elasticsearch.passwordSecret" $e.username | quote }}
{{ include "cqrsflow.secretEnv" (dict "name" "ELASTICSEARCH_PASSWORD" "ref" $e.passwordSecret) }}
{{- end }}
{{- if and $e.caSecret.name $e.caFingerprint }}
{{- fail "elasticsearch: set caSecret or caFingerprint, not both" }}
{{- end }}
{{- if $e.caSecret.name }}
- name: ELASTICSEARCH_CA_FILE
  value: /etc/cqrsflow/elasticsearch-ca/{{ $e.caSecret.key }}
{{- end }}
{{- if $e.caFingerprint }}
- name: ELASTICSEARCH_CA_FINGERPRINT
  value: {{ $e.caFingerprint | quote }}
{{- end }}
{{- end -}}

{{/*
Volumes and mounts of the CA and client-certificate Secrets a component
uses, plus a small writable /tmp (the root filesystem is read-only).
Call with (dict "root" $ "postgres" true "kafka" true "elasticsearch" false).
*/}}
{{- define "cqrsflow.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 16Mi
{{- $v := .root.Values }}
{{- if and .postgres $v.postgres.caSecret.name }}
- name: postgres-ca
  secret:
    secretName: {{ $v.postgres.caSecret.name }}
    items:
      - key: {{ $v.postgres.caSecret.key }}
        path: ca.crt
{{- end }}
{{- if and .kafka $v.kafka.tls.enabled $v.kafka.tls.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ $v.kafka.tls.caSecret.name }}
{{- end }}
{{- if and .kafka $v.kafka.tls.enabled $v.kafka.tls.clientCertSecret }}
- name: kafka-client
  secret:
    secretName: {{ $v.kafka.tls.clientCertSecret }}
{{- end }}
{{- if and .elasticsearch $v.elasticsearch.caSecret.name }}
- name: elasticsearch-ca
  secret:
    secretName: {{ $v.elasticsearch.caSecret.name }}
{{- end }}
{{- end -}}

{{- define "cqrsflow.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- $v := .root.Values }}
{{- if and .postgres $v.postgres.caSecret.name }}
- name: postgres-ca
  mountPath: /etc/cqrsflow/postgres
  readOnly: true
{{- end }}
{{- if and .kafka $v.kafka.tls.enabled $v.kafka.tls.caSecret.name }}
- name: kafka-ca
  mountPath: /etc/cqrsflow/kafka-ca
  readOnly: true
{{- end }}
{{- if and .kafka $v.kafka.tls.enabled $v.kafka.tls.clientCertSecret }}
- name: kafka-client
  mountPath: /etc/cqrsflow/kafka-client
  readOnly: true
{{- end }}
{{- if and .elasticsearch $v.elasticsearch.caSecret.name }}
- name: elasticsearch-ca
  mountPath: /etc/cqrsflow/elasticsearch-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* /healthz (liveness) and /readyz (readiness) on the named port. */}}
{{- define "cqrsflow.probes" -}}
{{- $p := .root.Values.probes -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  initialDelaySeconds: {{ $p.liveness.initialDelaySeconds }}
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
{{- end -}}

{{/* The pod-level settings every workload shares. */}}
{{- define "cqrsflow.podSpecCommon" -}}
serviceAccountName: {{ include "cqrsflow.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "cqrsflow.podMetadata" -}}
labels:
  {{- include "cqrsflow.labels" .root | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
  {{- with .extra }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with .root.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .root.Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
