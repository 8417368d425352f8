{{/* Names, labels and small shared pieces of the deltamesh chart. */}}

{{- define "deltamesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deltamesh.fullname" -}}
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

{{- define "deltamesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release (selectors are immutable). */}}
{{- define "deltamesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deltamesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "deltamesh.labels" -}}
helm.sh/chart: {{ include "deltamesh.chart" . }}
{{ include "deltamesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: deltamesh
{{- end }}

{{- define "deltamesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "deltamesh.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "deltamesh.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding the database URL: the user's, or the one this chart writes from database.url. */}}
{{- define "deltamesh.databaseSecretName" -}}
{{- if .Values.database.existingSecret.name }}
{{- .Values.database.existingSecret.name }}
{{- else }}
{{- printf "%s-database" (include "deltamesh.fullname" .) }}
{{- end }}
{{- end }}

{{- define "deltamesh.databaseSecretKey" -}}
{{- if .Values.database.existingSecret.name }}
{{- .Values.database.existingSecret.key | default "url" }}
{{- else }}
{{- "url" }}
{{- end }}
{{- end }}

{{/* Settings that cannot work together fail the render with a clear message. */}}
{{- define "deltamesh.validate" -}}
{{- if and (not .Values.database.url) (not .Values.database.existingSecret.name) }}
{{- fail "database: set database.existingSecret.name (recommended) or database.url; deltamesh needs an external PostgreSQL" }}
{{- end }}
{{- if and .Values.database.url .Values.database.existingSecret.name }}
{{- fail "database: set either database.url or database.existingSecret.name, not both" }}
{{- end }}
{{- if and .Values.etcd.endpoints .Values.etcd.existingSecret.name }}
{{- fail "etcd: set either etcd.endpoints or etcd.existingSecret.name, not both" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) }}
{{- fail "tls.enabled needs tls.existingSecret (a kubernetes.io/tls Secret with tls.crt and tls.key; ca.crt for client certificates)" }}
{{- end }}
{{- if and .Values.tls.requireClientCert (not .Values.tls.enabled) }}
{{- fail "tls.requireClientCert needs tls.enabled" }}
{{- end }}
{{- if and .Values.auth.jwt.enabled (not .Values.auth.jwt.jwksSecret.name) }}
{{- fail "auth.jwt.enabled needs auth.jwt.jwksSecret.name (a Secret holding the JSON Web Key Set)" }}
{{- end }}
{{- if and .Values.auth.jwt.enabled (or (not .Values.auth.jwt.issuer) (not .Values.auth.jwt.audience)) }}
{{- fail "auth.jwt.enabled needs auth.jwt.issuer and auth.jwt.audience" }}
{{- end }}
{{- if and .Values.config.content .Values.config.existingConfigMap }}
{{- fail "config: set either config.content or config.existingConfigMap, not both" }}
{{- end }}
{{- if ge (int64 .Values.node.shutdownGraceMs) (mul (int64 .Values.terminationGracePeriodSeconds) 1000) }}
{{- fail "node.shutdownGraceMs must be shorter than terminationGracePeriodSeconds, or Kubernetes kills nodes mid-drain" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- end }}

{{/* The port kubelet gRPC probes use: the API port, or the plaintext health port when TLS is on (kubelet probes cannot speak TLS). */}}
{{- define "deltamesh.probePort" -}}
{{- if .Values.tls.enabled }}{{ .Values.tls.healthPort }}{{ else }}{{ .Values.service.grpcPort }}{{ end }}
{{- end }}
