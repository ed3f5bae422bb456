{{/* Names, labels, images and the operator's command line, used by every template. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, or "<release>-<name>" (just the release
name when it already contains the chart name). 63 characters at most (DNS label).
*/}}
{{- define "sluice.fullname" -}}
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

{{/* helm.sh/chart: name-version, "+" not allowed in a label value. */}}
{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the operator pods; they never change across upgrades. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The labels every object of the chart carries. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: repository:tag, or repository:tag@digest
when a digest is given. An empty tag means the chart's appVersion.
Usage: include "sluice.image" (list .Values.image .Chart.AppVersion)
*/}}
{{- define "sluice.image" -}}
{{- $image := index . 0 }}
{{- $tag := default (index . 1) $image.tag }}
{{- if $image.digest }}
{{- printf "%s:%s@%s" $image.repository $tag $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The operator's command line: the only place that names its flags (`sluice-operator run
--help`; e2e/tests/chart.rs checks each one against it).
*/}}
{{- define "sluice.operatorArgs" -}}
- run
- --conduit-image={{ include "sluice.image" (list .Values.conduitImage .Chart.AppVersion) }}
- --proxy-image={{ include "sluice.image" (list .Values.proxyImage .Chart.AppVersion) }}
{{- with .Values.watchNamespaces }}
- --namespaces={{ join "," . }}
{{- end }}
- --admin-address=[::]:{{ .Values.adminPort }}
- --log-format={{ .Values.logFormat }}
{{- if .Values.leaderElection.enabled }}
- --leader-election=true
- --lease-name={{ .Values.leaderElection.leaseName }}
- --lease-namespace={{ .Release.Namespace }}
{{- else }}
- --leader-election=false
{{- end }}
- --identity=$(POD_NAME)
{{- end }}
