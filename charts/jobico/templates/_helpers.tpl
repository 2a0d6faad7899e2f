{{/* Names */}}
{{- define "jobico.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jobico.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "jobico.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jobico.labels" -}}
helm.sh/chart: {{ include "jobico.chart" . }}
{{ include "jobico.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "jobico.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobico.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "jobico.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "jobico.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "jobico.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "jobico.secretName" -}}
{{- default (include "jobico.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* The Secret and ConfigMap the migration hook reads (made before the release's own). */}}
{{- define "jobico.hookSecretName" -}}
{{- if .Values.existingSecret -}}
{{- .Values.existingSecret -}}
{{- else -}}
{{- printf "%s-migrate" (include "jobico.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* ConfigMap data: the non-secret JOBICO_* settings. */}}
{{- define "jobico.configData" -}}
JOBICO_STORAGE_URL: {{ .Values.storage.url | quote }}
JOBICO_S3_ENDPOINT: {{ .Values.storage.s3.endpoint | quote }}
JOBICO_S3_SECURE: {{ ternary "1" "0" .Values.storage.s3.secure | quote }}
JOBICO_S3_REGION: {{ .Values.storage.s3.region | quote }}
JOBICO_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
JOBICO_LOG_FORMAT: {{ .Values.config.logFormat | quote }}
JOBICO_QUEUE_REFRESH: {{ .Values.config.queueRefresh | quote }}
JOBICO_SCHEDULE_REFRESH: {{ .Values.config.scheduleRefresh | quote }}
JOBICO_CACHE_DIR: "/var/cache/jobico"
PROMETHEUS_MULTIPROC_DIR: "/tmp/jobico-metrics"
{{- range $k, $v := .Values.config.extraEnv }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Secret data (stringData): only when no existingSecret is given. */}}
{{- define "jobico.secretData" -}}
{{ .Values.existingSecretKeys.databaseUrl }}: {{ required "database.url is required (or existingSecret)" .Values.database.url | quote }}
{{ .Values.existingSecretKeys.redisUrl }}: {{ required "redis.url is required (or existingSecret)" .Values.redis.url | quote }}
{{ .Values.existingSecretKeys.s3AccessKey }}: {{ .Values.storage.s3.accessKey | quote }}
{{ .Values.existingSecretKeys.s3SecretKey }}: {{ .Values.storage.s3.secretKey | quote }}
{{ .Values.existingSecretKeys.adminToken }}: {{ required "auth.adminToken is required (or existingSecret)" .Values.auth.adminToken | quote }}
{{ .Values.existingSecretKeys.secretKey }}: {{ required "auth.secretKey is required (or existingSecret)" .Values.auth.secretKey | quote }}
{{- if .Values.mqtt.enabled }}
{{ .Values.existingSecretKeys.mqttUrl }}: {{ required "mqtt.url is required when mqtt.enabled (or existingSecret)" .Values.mqtt.url | quote }}
{{- end }}
{{- if and .Values.flower.enabled (not .Values.flower.basicAuthSecret) }}
{{ .Values.existingSecretKeys.flowerBasicAuth }}: {{ required "flower.basicAuth (user:password) is required when flower.enabled: Flower's UI and HTTP API need it (or flower.basicAuthSecret, existingSecret, or flower.enabled=false)" .Values.flower.basicAuth | quote }}
{{- end }}
{{- end -}}

{{/* Environment from the ConfigMap and the Secret. Call with (dict "root" $ "secret" name "config" name). */}}
{{- define "jobico.env" -}}
{{- $k := .root.Values.existingSecretKeys -}}
- name: JOBICO_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $k.databaseUrl }}
- name: JOBICO_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $k.redisUrl }}
- name: JOBICO_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $k.s3AccessKey }}
- name: JOBICO_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $k.s3SecretKey }}
- name: JOBICO_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $k.adminToken }}
- name: JOBICO_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $k.secretKey }}
{{- end -}}

{{/* Pod-level bits shared by every workload. */}}
{{- define "jobico.podCommon" -}}
serviceAccountName: {{ include "jobico.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "jobico.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.volumes.tmpSizeLimit }}
- name: cache
  emptyDir:
    sizeLimit: {{ .Values.volumes.cacheSizeLimit }}
{{- end -}}

{{- define "jobico.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: cache
  mountPath: /var/cache/jobico
{{- end -}}

{{- define "jobico.checksums" -}}
checksum/config: {{ include "jobico.configData" . | sha256sum }}
{{- if not .Values.existingSecret }}
checksum/secret: {{ include "jobico.secretData" . | sha256sum }}
{{- end }}
{{- end -}}
