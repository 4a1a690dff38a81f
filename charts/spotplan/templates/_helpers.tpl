{{- define "spotplan.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spotplan.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "spotplan.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "spotplan.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "spotplan.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spotplan.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "spotplan.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "spotplan.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "spotplan.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spotplan.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spotplan.marketDataConfigMap" -}}
{{- default (printf "%s-market-data" (include "spotplan.fullname" .)) .Values.marketData.airGapped.existingConfigMap }}
{{- end }}

{{/* Live AWS data: aws.enabled true/false, or auto (on with IRSA or Pod Identity). */}}
{{- define "spotplan.awsEnabled" -}}
{{- $v := toString .Values.aws.enabled -}}
{{- if eq $v "auto" -}}
{{- or (ne .Values.serviceAccount.irsaRoleArn "") .Values.podIdentity.enabled -}}
{{- else -}}
{{- eq $v "true" -}}
{{- end -}}
{{- end }}
