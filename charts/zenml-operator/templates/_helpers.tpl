{{/* Name of the chart, or nameOverride. */}}
{{- define "zenml-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: the release name when it already contains the chart name (a release named
`zenml-operator` gives `zenml-operator`), else `<release>-<chart>`. Cluster-scoped objects that belong to the release
(the operator's ClusterRole and ClusterRoleBinding, the admission policies, the self-service binding) carry it too,
so two releases, or a release and manifests applied by hand, never collide.
*/}}
{{- define "zenml-operator.fullname" -}}
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

{{- define "zenml-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zenml-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zenml-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "zenml-operator.labels" -}}
helm.sh/chart: {{ include "zenml-operator.chart" . }}
{{ include "zenml-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: zenml-operator
{{- end }}

{{- define "zenml-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zenml-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "zenml-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The ClusterRoles the operator may bind: the four built-in roles and customRoles, sorted, without duplicates. */}}
{{- define "zenml-operator.bindableRoles" -}}
{{- $r := .Values.roles }}
{{- concat (list $r.admin $r.developer $r.contributor $r.viewer) .Values.customRoles | uniq | sortAlpha | toJson }}
{{- end }}

{{/*
The documents of a manifest in files/ (the same manifests `make demo` and the e2e tests apply by hand), each with the
chart's labels added. With `prefix`, names become `<fullname>-<name without "zenml-">`, and a binding's policyName
follows.
  include "zenml-operator.files" (dict "root" . "file" "files/x.yaml" "prefix" true)
*/}}
{{- define "zenml-operator.files" -}}
{{- $root := .root }}
{{- $prefix := .prefix }}
{{- $fullname := include "zenml-operator.fullname" $root }}
{{- $labels := include "zenml-operator.labels" $root | fromYaml }}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" ($root.Files.Get .file) -1 }}
{{- $obj := fromYaml $doc }}
{{- if $obj }}
{{- if hasKey $obj "Error" }}{{ fail (printf "%s: %s" $.file $obj.Error) }}{{ end }}
{{- $_ := set $obj.metadata "labels" (merge (dict) ($obj.metadata.labels | default dict) $labels) }}
{{- if $prefix }}
{{- $_ := set $obj.metadata "name" (printf "%s-%s" $fullname (trimPrefix "zenml-" $obj.metadata.name)) }}
{{- if and (hasKey $obj "spec") (hasKey $obj.spec "policyName") }}
{{- $_ := set $obj.spec "policyName" (printf "%s-%s" $fullname (trimPrefix "zenml-" $obj.spec.policyName)) }}
{{- end }}
{{- end }}
---
{{ toYaml $obj }}
{{- end }}
{{- end }}
{{- end }}

{{/* Checks of values that the schema cannot express. */}}
{{- define "zenml-operator.validate" -}}
{{- $le := .Values.leaderElection }}
{{- if and (not $le.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail "leaderElection.enabled=false needs replicaCount: 1: operators without election fight over every object" }}
{{- end }}
{{- if and $le.enabled (ge (int $le.renewDeadline) (int $le.leaseDuration)) }}
{{- fail "leaderElection.renewDeadline must be less than leaderElection.leaseDuration" }}
{{- end }}
{{- range $role := concat (values .Values.roles) .Values.customRoles }}
{{- if or (eq $role "cluster-admin") (hasPrefix "system:" $role) }}
{{- fail (printf "roles/customRoles: the operator may never bind %q: whoever controls it could grant it to anyone" $role) }}
{{- end }}
{{- end }}
{{- if and $le.enabled (ge (int $le.retryPeriod) (int $le.renewDeadline)) }}
{{- fail "leaderElection.retryPeriod must be less than leaderElection.renewDeadline" }}
{{- end }}
{{- end }}

{{/* The API group of an apiVersion: "" for the core group ("v1"). */}}
{{- define "zenml-operator.apiGroup" -}}
{{- if contains "/" . }}{{ index (splitList "/" .) 0 }}{{ end }}
{{- end }}

{{/* templates.kinds as --template-kinds takes them: apiVersion/Kind, comma-separated. */}}
{{- define "zenml-operator.templateKinds" -}}
{{- $kinds := list }}
{{- range .Values.templates.kinds }}
{{- if hasPrefix "rbac.authorization.k8s.io/" .apiVersion }}
{{- fail (printf "templates.kinds: %s is an RBAC kind; a template must never grant access" .kind) }}
{{- end }}
{{- $kinds = append $kinds (printf "%s/%s" .apiVersion .kind) }}
{{- end }}
{{- join "," $kinds }}
{{- end }}
