{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "hexrl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "hexrl.fullname" -}}
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

{{- define "hexrl.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object (DESIGN.md §8). */}}
{{- define "hexrl.labels" -}}
helm.sh/chart: {{ include "hexrl.chart" . }}
{{ include "hexrl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hexrl
{{- end }}

{{/* Labels that select the operator pods; never change them after release (Deployment selectors are immutable). */}}
{{- define "hexrl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hexrl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "hexrl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hexrl.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository@digest when a digest is given, else repository:tag (tag defaults to appVersion). */}}
{{- define "hexrl.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Operator settings as HEXRL_OPERATOR_* environment variables (hexrl.k8s.settings.OperatorSettings.from_env
reads exactly these names). Prices: pool names and GPU types share one map, pool names win. The GPU catalog
overrides travel as one JSON object (validated by the operator at start-up).
*/}}
{{- define "hexrl.operatorEnv" -}}
- name: HEXRL_OPERATOR_LOG_LEVEL
  value: {{ .Values.operator.logLevel | upper | quote }}
- name: HEXRL_OPERATOR_POOL_LABEL_KEYS
  value: {{ join "," .Values.cluster.poolLabelKeys | quote }}
- name: HEXRL_OPERATOR_SPOT_LABELS
  value: {{ join "," .Values.cluster.spotLabels | quote }}
- name: HEXRL_OPERATOR_GOING_AWAY_TAINTS
  value: {{ join "," .Values.cluster.goingAwayTaints | quote }}
- name: HEXRL_OPERATOR_INTER_POOL_GBPS
  value: {{ .Values.cluster.interPoolGBps | quote }}
- name: HEXRL_OPERATOR_PRICE_OVERRIDES
  value: {{ include "hexrl.priceOverrides" . | quote }}
- name: HEXRL_OPERATOR_GPU_CATALOG
  value: {{ .Values.gpuCatalog | default dict | toJson | quote }}
{{- with .Values.workerImage }}
- name: HEXRL_OPERATOR_WORKER_IMAGE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.workerImagePullPolicy }}
- name: HEXRL_OPERATOR_WORKER_IMAGE_PULL_POLICY
  value: {{ . | quote }}
{{- end }}
{{- if .Values.leaderElection.enabled }}
- name: HEXRL_OPERATOR_PEERING
  value: {{ .Values.leaderElection.peeringName | quote }}
- name: HEXRL_OPERATOR_STANDALONE
  value: "false"
{{- else }}
- name: HEXRL_OPERATOR_STANDALONE
  value: "true"
{{- end }}
- name: HEXRL_OPERATOR_PRIORITY_CLASS_PREFIX
  value: {{ .Values.priorityClasses.prefix | quote }}
{{- end }}

{{/* JSON map of $/GPU-hour overrides by pool name or GPU type. */}}
{{- define "hexrl.priceOverrides" -}}
{{- $out := dict }}
{{- range $key, $price := .Values.prices }}
{{- $_ := set $out $key (float64 $price) }}
{{- end }}
{{- toJson $out }}
{{- end }}
