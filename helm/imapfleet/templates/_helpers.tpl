{{/*
Helpers. The chart's tests render these templates with a Go-template engine that has Go's builtins
and these Helm/sprig functions only: default, quote, toYaml, nindent, indent, include, trunc,
trimSuffix, replace, contains, b64enc, sha256sum, fail. Keep to them (and never range over a map: keys
come out in another order there; use toYaml for maps).
*/}}

{{- define "imapfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imapfleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Object names. Each is the full name plus a suffix, cut so that the whole stays within the limit of its
kind: 63 for Services, Deployments (pod labels) and Jobs, 52 for a CronJob (its Jobs get 11 more).
*/}}
{{- define "imapfleet.workerName" -}}
{{- printf "%s-worker" (include "imapfleet.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{- define "imapfleet.metricsName" -}}
{{- printf "%s-metrics" (include "imapfleet.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "imapfleet.configName" -}}
{{- printf "%s-config" (include "imapfleet.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{- define "imapfleet.batchName" -}}
{{- printf "%s-batch" (include "imapfleet.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{- define "imapfleet.initialName" -}}
{{- printf "%s-initial" (include "imapfleet.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "imapfleet.deltaName" -}}
{{- printf "%s-delta" (include "imapfleet.fullname" . | trunc 46 | trimSuffix "-") }}
{{- end }}

{{- define "imapfleet.rabbitmqAuthName" -}}
{{- printf "%s-rabbitmq" (include "imapfleet.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "imapfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imapfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imapfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "imapfleet.labels" -}}
helm.sh/chart: {{ include "imapfleet.chart" . }}
{{ include "imapfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "imapfleet.workerSelectorLabels" -}}
{{ include "imapfleet.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "imapfleet.dispatcherSelectorLabels" -}}
{{ include "imapfleet.selectorLabels" . }}
app.kubernetes.io/component: dispatcher
{{- end }}

{{- define "imapfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "imapfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "imapfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The imapfleet job name of the dispatches (status shows the newest job of a name). */}}
{{- define "imapfleet.jobName" -}}
{{- default .Release.Name .Values.dispatcher.jobName }}
{{- end }}

{{/* The Secret with the broker URL, the Redis URL and the credential key. */}}
{{- define "imapfleet.secretName" -}}
{{- default (printf "%s-secrets" (include "imapfleet.fullname" . | trunc 55 | trimSuffix "-")) .Values.secret.existingSecret }}
{{- end }}

{{/* True (non-empty) when a batch source is configured: the dispatcher objects are rendered then. */}}
{{- define "imapfleet.batchEnabled" -}}
{{- if or .Values.batch.existingSecret .Values.batch.existingConfigMap .Values.batch.content }}true{{ end }}
{{- end }}

{{/* Checks of combinations the schema cannot express. */}}
{{- define "imapfleet.validate" -}}
{{- if and .Values.autoscaling.keda.enabled .Values.autoscaling.hpa.enabled }}
{{- fail "autoscaling: enable at most one of keda and hpa" }}
{{- end }}
{{- if and .Values.batch.existingSecret .Values.batch.existingConfigMap }}
{{- fail "batch: set existingSecret or existingConfigMap, not both" }}
{{- end }}
{{- if and .Values.batch.content (or .Values.batch.existingSecret .Values.batch.existingConfigMap) }}
{{- fail "batch: content and an existing Secret/ConfigMap exclude each other" }}
{{- end }}
{{- if gt .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas }}
{{- fail "autoscaling: minReplicas is above maxReplicas" }}
{{- end }}
{{- end }}

{{/* Environment shared by workers and dispatcher: broker, Redis, key, metrics address. */}}
{{- define "imapfleet.env" -}}
- name: IMAPFLEET_AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "imapfleet.secretName" . }}
      key: {{ .Values.secret.keys.amqpUrl }}
- name: IMAPFLEET_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "imapfleet.secretName" . }}
      key: {{ .Values.secret.keys.redisUrl }}
- name: IMAPFLEET_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "imapfleet.secretName" . }}
      key: {{ .Values.secret.keys.secretKey }}
- name: IMAPFLEET_METRICS_ADDR
  value: {{ printf "0.0.0.0:%v" .Values.metrics.port | quote }}
- name: IMAPFLEET_QUEUE
  value: {{ .Values.queue | quote }}
- name: IMAPFLEET_MAX_CONNECTIONS_PER_HOST
  value: {{ printf "%v" .Values.limits.maxConnectionsPerHost | quote }}
- name: IMAPFLEET_MAX_CONNECTIONS_PER_ACCOUNT
  value: {{ printf "%v" .Values.limits.maxConnectionsPerAccount | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The dispatcher's pod spec (initial Job and delta CronJob). */}}
{{- define "imapfleet.dispatcherPod" -}}
metadata:
  labels:
    {{- include "imapfleet.dispatcherSelectorLabels" . | nindent 4 }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "imapfleet.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: dispatch
      image: {{ include "imapfleet.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - dispatch
        - --accounts
        - {{ printf "/etc/imapfleet/batch/%s" .Values.batch.key | quote }}
        - --job
        - {{ include "imapfleet.jobName" . | quote }}
        {{- range .Values.dispatcher.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        {{- include "imapfleet.env" . | nindent 8 }}
      envFrom:
        - configMapRef:
            name: {{ include "imapfleet.configName" . }}
      resources:
        {{- toYaml .Values.dispatcher.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: batch
          mountPath: /etc/imapfleet/batch
          readOnly: true
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: batch
      {{- if .Values.batch.existingConfigMap }}
      configMap:
        name: {{ .Values.batch.existingConfigMap }}
      {{- else }}
      secret:
        secretName: {{ default (include "imapfleet.batchName" .) .Values.batch.existingSecret }}
      {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
