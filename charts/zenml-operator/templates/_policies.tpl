{{/*
The documents of an admission policy manifest in files/, as "zenml-operator.files" renders them (chart labels, names
after the release), with the CEL variables the release decides: each policy variable named in `variables` gets that
expression. files/ holds the values for the release `zenml-operator` in `default`, which `make demo` and the e2e tests
apply by hand.
  include "zenml-operator.policies" (dict "root" . "file" "files/x.yaml" "variables" (include "zenml-operator.policyVariables" . | fromJson))
*/}}
{{- define "zenml-operator.policies" -}}
{{- $variables := .variables }}
{{- $rendered := include "zenml-operator.files" (dict "root" .root "file" .file "prefix" true) }}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" $rendered -1 }}
{{- $obj := fromYaml $doc }}
{{- if $obj }}
{{- if hasKey $obj "spec" }}
{{- range $v := ($obj.spec.variables | default list) }}
{{- if hasKey $variables $v.name }}
{{- $_ := set $v "expression" (get $variables $v.name) }}
{{- end }}
{{- end }}
{{- end }}
---
{{ toYaml $obj }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The CEL expressions of the policy variables that depend on the release, as a JSON object (JSON strings and lists of
strings are CEL literals too):
  operator      the username of the operator's ServiceAccount, which the tenant rules do not restrain;
  exemptUsers   admissionPolicies.exemptUsers;
  exemptGroups  admissionPolicies.exemptGroups (cluster admins);
  protected     default, kube-*, admissionPolicies.protectedNamespaces and the release namespace.
*/}}
{{- define "zenml-operator.policyVariables" -}}
{{- $p := .Values.admissionPolicies }}
{{- $operator := printf "system:serviceaccount:%s:%s" .Release.Namespace (include "zenml-operator.serviceAccountName" .) }}
{{- $protected := concat (list "default" "kube-*") $p.protectedNamespaces (list .Release.Namespace) | uniq }}
{{- dict
    "operator" (toJson $operator)
    "exemptUsers" (toJson $p.exemptUsers)
    "exemptGroups" (toJson $p.exemptGroups)
    "protected" (toJson $protected)
  | toJson }}
{{- end }}
