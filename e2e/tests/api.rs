//! The `zenml.io/v1alpha1` API as the API server enforces it: bad input is refused at
//! `kubectl apply` time with the offending field named, immutable fields stay immutable, the
//! examples are valid, `kubectl explain` teaches the API and `kubectl get zenml` lists it.
//!
//! Admission is checked with `kubectl apply --dry-run=server`, which runs the whole validation
//! (OpenAPI schema, CEL rules, strict field validation) and stores nothing. Only the tests of
//! immutability and of `kubectl get` create objects, under [`unique`] names, and delete them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::fixtures::Cleanup;
use e2e::{Output, eventually, install_crds, kubectl, run, run_ok, unique};

const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a deleted object may wait for an operator to remove its finalizers before the test
/// removes them itself (no operator may be running at all).
const FINALIZER_GRACE: Duration = Duration::from_secs(10);
/// Every manifest below is of this API version; the tables leave it out.
const API_VERSION: &str = "apiVersion: zenml.io/v1alpha1";

/// Invalid manifests (without `apiVersion`): name, YAML, and what the error must contain — the
/// path of the wrong field and a distinctive part of the message. A rule on the whole object
/// (the name rules) is reported by the API server at the path `<nil>`, so its message names
/// `metadata.name` itself.
const CASES: &[(&str, &str, &[&str])] = &[
    // Project names: a project's name is its namespace's name.
    (
        "project name with uppercase",
        "kind: Project\nmetadata: {name: Fraud-Detection}\nspec: {workspace: ws}",
        &["metadata.name", "must be a DNS-1123 label"],
    ),
    (
        "project name with dots",
        "kind: Project\nmetadata: {name: fraud.detection}\nspec: {workspace: ws}",
        &["metadata.name", "must be a DNS-1123 label"],
    ),
    (
        "project name with underscore",
        "kind: Project\nmetadata: {name: fraud_detection}\nspec: {workspace: ws}",
        &["metadata.name", "must be a DNS-1123 label"],
    ),
    (
        "project name of 64 characters",
        "kind: Project\nmetadata: {name: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd}\nspec: {workspace: ws}",
        &["metadata.name", "must be a DNS-1123 label"],
    ),
    (
        "project named default",
        "kind: Project\nmetadata: {name: default}\nspec: {workspace: ws}",
        &["metadata.name", "'default' and 'kube-*' are protected namespaces"],
    ),
    (
        "project named kube-system",
        "kind: Project\nmetadata: {name: kube-system}\nspec: {workspace: ws}",
        &["metadata.name", "'default' and 'kube-*' are protected namespaces"],
    ),
    (
        "project named kube-foo",
        "kind: Project\nmetadata: {name: kube-foo}\nspec: {workspace: ws}",
        &["metadata.name", "'default' and 'kube-*' are protected namespaces"],
    ),
    // Project spec.
    (
        "project without spec.workspace",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {displayName: No workspace}",
        &["spec.workspace", "Required value"],
    ),
    (
        "project workspace not a DNS label",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ML_Platform}",
        &["spec.workspace", "should match"],
    ),
    (
        "projectId with a space",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, projectId: a b}",
        &["spec.projectId", "should match '^[A-Za-z0-9_-]+$'"],
    ),
    (
        "projectId with a dot",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, projectId: a.b}",
        &["spec.projectId", "should match '^[A-Za-z0-9_-]+$'"],
    ),
    (
        "projectId of 64 characters",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, projectId: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd}",
        &["spec.projectId", "Too long: may not be more than 63"],
    ),
    (
        "unknown networkIsolation",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, networkIsolation: Cluster}",
        &["spec.networkIsolation", "Unsupported value: \"Cluster\""],
    ),
    (
        "unknown deletionPolicy",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, deletionPolicy: Orphan}",
        &["spec.deletionPolicy", "Unsupported value: \"Orphan\""],
    ),
    (
        "unknown project field",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, quotta: {hard: {pods: '1'}}}",
        &["spec.quotta", "unknown field"],
    ),
    // Quantities and resource names.
    (
        "quota quantity abc",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, quota: {hard: {requests.cpu: abc}}}",
        &["spec.quota.hard.requests.cpu", "should match"],
    ),
    (
        "quota quantity -1 as a string",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, quota: {hard: {requests.cpu: '-1'}}}",
        &["spec.quota.hard.requests.cpu", "should match"],
    ),
    (
        "quota quantity -1 as an integer",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, quota: {hard: {pods: -1}}}",
        &["spec.quota.hard.pods", "should be greater than or equal to 0"],
    ),
    (
        "quota quantity 1.5.5",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, quota: {hard: {requests.memory: 1.5.5}}}",
        &["spec.quota.hard.requests.memory", "should match"],
    ),
    (
        "quota resource name with a space",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, quota: {hard: {'bad key!': '1'}}}",
        &["spec.quota.hard", "keys must be"],
    ),
    (
        "limitRange default quantity",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, limitRange: {default: {cpu: 1x}}}",
        &["spec.limitRange.default.cpu", "should match"],
    ),
    (
        "limitRange max resource name",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, limitRange: {max: {'c p u': '1'}}}",
        &["spec.limitRange.max", "keys must be"],
    ),
    // Project namespace labels and annotations, runner.
    (
        "namespace label zenml.io/x",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, namespaceLabels: {zenml.io/x: a}}",
        &["spec.namespaceLabels", "Forbidden", "reserved for the operator and Kubernetes"],
    ),
    (
        "namespace label team.zenml.io/x",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, namespaceLabels: {team.zenml.io/x: a}}",
        &["spec.namespaceLabels", "Forbidden", "reserved for the operator and Kubernetes"],
    ),
    (
        "namespace label kubernetes.io/metadata.name",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, namespaceLabels: {kubernetes.io/metadata.name: other}}",
        &["spec.namespaceLabels", "Forbidden", "reserved for the operator and Kubernetes"],
    ),
    (
        "namespace label foo.k8s.io/x",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, namespaceLabels: {foo.k8s.io/x: a}}",
        &["spec.namespaceLabels", "Forbidden", "reserved for the operator and Kubernetes"],
    ),
    (
        "Pod Security label on a project",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, namespaceLabels: {pod-security.kubernetes.io/enforce: privileged}}",
        &["spec.namespaceLabels", "Forbidden", "Pod Security labels are set by the Workspace"],
    ),
    (
        "namespace label value with a space",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, namespaceLabels: {team: has space}}",
        &["spec.namespaceLabels", "label values must be at most 63"],
    ),
    (
        "namespace label value of 64 characters",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, namespaceLabels: {team: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd}}",
        &["spec.namespaceLabels.team", "Too long: may not be more than 63"],
    ),
    (
        "namespace label key starting with a dash",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, namespaceLabels: {-team: a}}",
        &["spec.namespaceLabels", "keys must be qualified names"],
    ),
    (
        "namespace label key with two slashes",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, namespaceLabels: {example.com/a/b: a}}",
        &["spec.namespaceLabels", "keys must be qualified names"],
    ),
    (
        "namespace annotation zenml.io/owner",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, namespaceAnnotations: {zenml.io/owner: me}}",
        &["spec.namespaceAnnotations", "Forbidden", "reserved for the operator and Kubernetes"],
    ),
    (
        "runner annotation kubernetes.io/x",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, runner: {annotations: {kubernetes.io/x: a}}}",
        &["spec.runner.annotations", "Forbidden", "reserved for the operator and Kubernetes"],
    ),
    (
        "runner serviceAccountName with capitals",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, runner: {serviceAccountName: Runner_SA}}",
        &["spec.runner.serviceAccountName", "should match"],
    ),
    // ProjectRoleBinding.
    (
        "binding name not a DNS subdomain",
        "kind: ProjectRoleBinding\nmetadata: {name: Bad_Name}\nspec: {project: p, role: viewer, subjects: [{kind: User, name: a}]}",
        &["metadata.name", "DNS-1123 subdomain"],
    ),
    (
        "binding project not a DNS label",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-invalid}\nspec: {project: fraud.detection, role: viewer, subjects: [{kind: User, name: a}]}",
        &["spec.project", "should match"],
    ),
    (
        "binding without role",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-invalid}\nspec: {project: p, subjects: [{kind: User, name: a}]}",
        &["spec.role", "Required value"],
    ),
    (
        "binding role with capitals",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-invalid}\nspec: {project: p, role: Viewer, subjects: [{kind: User, name: a}]}",
        &["spec.role", "should match"],
    ),
    (
        "binding with no subjects",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-invalid}\nspec: {project: p, role: viewer, subjects: []}",
        &["spec.subjects", "should have at least 1 items"],
    ),
    (
        "subject kind Robot",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-invalid}\nspec: {project: p, role: viewer, subjects: [{kind: Robot, name: r2d2}]}",
        &["spec.subjects[0].kind", "Unsupported value: \"Robot\""],
    ),
    (
        "ServiceAccount subject with neither project nor namespace",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-invalid}\nspec: {project: p, role: viewer, subjects: [{kind: ServiceAccount, name: runner}]}",
        &["spec.subjects[0]", "needs exactly one of project or namespace"],
    ),
    (
        "ServiceAccount subject with both project and namespace",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-invalid}\nspec: {project: p, role: viewer, subjects: [{kind: User, name: a}, {kind: ServiceAccount, name: runner, project: p, namespace: other}]}",
        &["spec.subjects[1]", "needs exactly one of project or namespace"],
    ),
    (
        "User subject with a project",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-invalid}\nspec: {project: p, role: viewer, subjects: [{kind: User, name: a, project: p}]}",
        &["spec.subjects[0]", "User and Group subjects take neither"],
    ),
    (
        "Group subject with a namespace",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-invalid}\nspec: {project: p, role: viewer, subjects: [{kind: Group, name: g, namespace: other}]}",
        &["spec.subjects[0]", "User and Group subjects take neither"],
    ),
    (
        "ServiceAccount subject name with capitals",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-invalid}\nspec: {project: p, role: viewer, subjects: [{kind: ServiceAccount, name: Runner, project: p}]}",
        &["spec.subjects[0].name", "a ServiceAccount name must be a DNS-1123 subdomain"],
    ),
    (
        "expiresAt not a date",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-invalid}\nspec: {project: p, role: viewer, subjects: [{kind: User, name: a}], expiresAt: tomorrow}",
        &["spec.expiresAt", "date-time"],
    ),
    // Workspace.
    (
        "workspace name with dots",
        "kind: Workspace\nmetadata: {name: ml.platform}\nspec: {}",
        &["metadata.name", "a workspace name must be a DNS-1123 label"],
    ),
    (
        "workspace name with uppercase",
        "kind: Workspace\nmetadata: {name: ML-Platform}\nspec: {}",
        &["metadata.name", "a workspace name must be a DNS-1123 label"],
    ),
    (
        "workspace namespace label zenml.io/x",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {projectDefaults: {namespaceLabels: {zenml.io/x: a}}}",
        &["spec.projectDefaults.namespaceLabels", "Forbidden", "pod-security.kubernetes.io/ is allowed here"],
    ),
    (
        "workspace namespace label kubernetes.io/metadata.name",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {projectDefaults: {namespaceLabels: {kubernetes.io/metadata.name: x}}}",
        &["spec.projectDefaults.namespaceLabels", "Forbidden", "reserved for the operator and Kubernetes"],
    ),
    (
        "workspace default networkIsolation",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {projectDefaults: {networkIsolation: Cluster}}",
        &["spec.projectDefaults.networkIsolation", "Unsupported value: \"Cluster\""],
    ),
    (
        "workspace default quota quantity",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {projectDefaults: {quota: {hard: {pods: many}}}}",
        &["spec.projectDefaults.quota.hard.pods", "should match"],
    ),
    (
        "budget quantity",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {budget: {hard: {requests.cpu: lots}}}",
        &["spec.budget.hard.requests.cpu", "should match"],
    ),
    (
        "budget quantity beyond 1E",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {budget: {hard: {requests.cpu: '1e40', pods: '10'}}}",
        &["spec.budget.hard", "every quantity must be at most 1E"],
    ),
    (
        "budget quantity in binary exa",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {budget: {hard: {requests.memory: 1Ei}}}",
        &["spec.budget.hard", "every quantity must be at most 1E"],
    ),
    (
        "budget quantity as a large integer",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {budget: {hard: {pods: 1000000000000000001}}}",
        &["spec.budget.hard", "every quantity must be at most 1E"],
    ),
    (
        "a quantity whose exponent would cost the API server seconds",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {budget: {hard: {requests.cpu: '1e999999999999'}}}",
        &["spec.budget.hard.requests.cpu", "should match"],
    ),
    (
        "a quantity of more than 19 digits",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {projectDefaults: {quota: {hard: {requests.nvidia.com/gpu: '1000000000000000000000000'}}}}",
        &["spec.projectDefaults.quota.hard.requests.nvidia.com/gpu", "should match"],
    ),
    (
        "project quota beyond 1E",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: w, quota: {hard: {requests.cpu: '2E'}}}",
        &["spec.quota.hard", "every quantity must be at most 1E"],
    ),
    (
        "project limit range beyond 1E",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: w, limitRange: {max: {memory: '1e19'}}}",
        &["spec.limitRange.max", "every quantity must be at most 1E"],
    ),
    (
        "maxProjects -1",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {maxProjects: -1}",
        &["spec.maxProjects", "should be greater than or equal to 0"],
    ),
    (
        "maxProjects over the maximum",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {maxProjects: 100001}",
        &["spec.maxProjects", "should be less than or equal to 100000"],
    ),
    (
        "custom role named admin",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {roles: [{name: admin, clusterRole: my-admin}]}",
        &["spec.roles[0].name", "built-in roles and cannot be redefined"],
    ),
    (
        "custom role bound to cluster-admin",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {roles: [{name: root, clusterRole: cluster-admin}]}",
        &["spec.roles[0].clusterRole", "can never be granted through a workspace"],
    ),
    (
        "custom role bound to system:foo",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {roles: [{name: root, clusterRole: 'system:foo'}]}",
        &["spec.roles[0].clusterRole", "can never be granted through a workspace"],
    ),
    (
        "duplicate custom role names",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {roles: [{name: runner, clusterRole: a}, {name: runner, clusterRole: b}]}",
        &["spec.roles[1]", "Duplicate value", "\"name\":\"runner\""],
    ),
    (
        "member role with capitals",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {members: [{role: Admin, subjects: [{kind: Group, name: admins}]}]}",
        &[
            "spec.members",
            "must be admin, developer, contributor, viewer or a role listed in spec.roles",
            "should match",
        ],
    ),
    (
        "member ServiceAccount subject without project",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {members: [{role: admin, subjects: [{kind: ServiceAccount, name: ci}]}]}",
        &["spec.members[0].subjects[0]", "needs exactly one of project or namespace"],
    ),
    (
        "unknown workspace field",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {maxProject: 3}",
        &["spec.maxProject", "unknown field"],
    ),
    ("workspace without spec", "kind: Workspace\nmetadata: {name: e2e-api-invalid}", &["spec", "Required value"]),
    // Egress (issue 19): modes, and what only AllowList reads.
    (
        "egress mode unknown",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, egress: {mode: Closed}}",
        &["spec.egress.mode", "Unsupported value: \"Closed\""],
    ),
    (
        "egress allow-list with nothing listed",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, egress: {mode: AllowList}}",
        &["spec.egress", "mode AllowList needs cidrs or namespaces", "use mode: Workspace"],
    ),
    (
        "egress cidrs without AllowList",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {projectDefaults: {egress: {mode: Workspace, cidrs: [10.0.0.0/8]}}}",
        &["spec.projectDefaults.egress", "cidrs and namespaces are read only with mode AllowList"],
    ),
    (
        "egress cidr that is an address",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, egress: {mode: AllowList, cidrs: [10.0.0.1]}}",
        &["spec.egress.cidrs[0]", "must be a CIDR with no host bits set"],
    ),
    (
        "egress cidr with host bits",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, egress: {mode: AllowList, cidrs: [10.1.2.3/16]}}",
        &["spec.egress.cidrs[0]", "must be a CIDR with no host bits set"],
    ),
    (
        "egress namespace that is not a name",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, egress: {mode: AllowList, namespaces: [LLM_Gateway]}}",
        &["spec.egress.namespaces[0]", "should match"],
    ),
    (
        "expiresAt that is not a date-time",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, expiresAt: tomorrow}",
        &["spec.expiresAt", "date-time"],
    ),
    (
        "default project name without the workspace's prefix",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {projectNamePrefix: ml-, defaultProject: {name: sandbox}}",
        &["spec.defaultProject.name", "must start with spec.projectNamePrefix"],
    ),
    (
        "default project named default",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {defaultProject: {name: default}}",
        &["spec.defaultProject.name", "protected namespaces"],
    ),
    (
        "default project name derived longer than 63 characters",
        "kind: Workspace\nmetadata: {name: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdef}\nspec: {defaultProject: {}}",
        &["<workspace>-default", "set spec.defaultProject.name"],
    ),
];

/// Valid edge cases (without `apiVersion`): each must be admitted.
const VALID: &[(&str, &str)] = &[
    (
        "quantities at the bound",
        "kind: Workspace\nmetadata: {name: e2e-api-valid}\nspec: {budget: {hard: {requests.cpu: 1E, pods: 1000000000000000000, requests.memory: 1000P, requests.ephemeral-storage: '0.000000001'}}}",
    ),
    (
        "quantities 500m, 1e3, 2, integer 50 and 1.5Gi; a count/ key",
        "kind: Project\nmetadata: {name: e2e-api-valid}\nspec:\n  workspace: ws\n  quota: {hard: {requests.cpu: 500m, limits.cpu: 1e3, requests.nvidia.com/gpu: '2', pods: 50, requests.memory: 1.5Gi, count/deployments.apps: '10'}}\n  limitRange: {default: {cpu: '1', memory: 1.5Gi}, defaultRequest: {cpu: 100m}, max: {cpu: 4}, min: {memory: 1Mi}}",
    ),
    (
        "project name of 63 characters",
        "kind: Project\nmetadata: {name: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc}\nspec: {workspace: ws}",
    ),
    (
        "projectId default on a project with another name",
        "kind: Project\nmetadata: {name: e2e-api-valid}\nspec: {workspace: ws, projectId: default}",
    ),
    (
        "projectId with underscores and capitals",
        "kind: Project\nmetadata: {name: e2e-api-valid}\nspec: {workspace: ws, projectId: Fraud_Detection-2}",
    ),
    (
        "every enum value and free labels and annotations",
        "kind: Project\nmetadata: {name: e2e-api-valid}\nspec:\n  workspace: ws\n  networkIsolation: None\n  deletionPolicy: Retain\n  namespaceLabels: {cost-center: '1234', example.com/team: ml, empty: ''}\n  namespaceAnnotations: {example.com/owner: 'Some free text, with spaces!'}\n  runner: {serviceAccountName: runner.v2, annotations: {iam.gke.io/gcp-service-account: runner@example.iam.gserviceaccount.com}}",
    ),
    (
        "Pod Security label on a workspace",
        "kind: Workspace\nmetadata: {name: e2e-api-valid}\nspec: {projectDefaults: {namespaceLabels: {pod-security.kubernetes.io/enforce: baseline}, networkIsolation: Workspace}}",
    ),
    (
        "workspace with custom roles, members and budget",
        "kind: Workspace\nmetadata: {name: e2e-api-valid}\nspec:\n  maxProjects: 0\n  budget: {hard: {requests.cpu: '64', requests.memory: 256Gi}}\n  roles: [{name: runner, clusterRole: 'zenml:pipeline-runner'}, {name: auditor, clusterRole: view}]\n  members: [{role: runner, subjects: [{kind: ServiceAccount, name: ci, namespace: ci-system}]}]",
    ),
    (
        "egress allow-list of IPv4 and IPv6 ranges and a namespace",
        "kind: Project\nmetadata: {name: e2e-api-valid}\nspec: {workspace: ws, egress: {mode: AllowList, cidrs: [203.0.113.0/24, 198.51.100.7/32, '2001:db8::/32'], namespaces: [llm-gateway]}}",
    ),
    (
        "egress Workspace as a workspace default",
        "kind: Workspace\nmetadata: {name: e2e-api-valid}\nspec: {projectDefaults: {egress: {mode: Workspace}}}",
    ),
    (
        "project with an expiry",
        "kind: Project\nmetadata: {name: e2e-api-valid}\nspec: {workspace: ws, expiresAt: '2030-12-31T18:00:00Z'}",
    ),
    (
        "default project named with the workspace's prefix",
        "kind: Workspace\nmetadata: {name: e2e-api-valid}\nspec: {projectNamePrefix: ml-, defaultProject: {name: ml-sandbox, displayName: Sandbox, deletionPolicy: Retain}}",
    ),
    (
        "default project derived from a workspace name of 55 characters",
        "kind: Workspace\nmetadata: {name: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcde}\nspec: {defaultProject: {}}",
    ),
    (
        "binding with every subject kind and an expiry",
        "kind: ProjectRoleBinding\nmetadata: {name: e2e-api-valid.v2}\nspec:\n  project: p\n  role: developer\n  expiresAt: '2030-12-31T18:00:00Z'\n  subjects:\n  - {kind: User, name: Alice@Example.com}\n  - {kind: Group, name: 'oidc:Data Scientists'}\n  - {kind: ServiceAccount, name: zenml-runner, project: other}\n  - {kind: ServiceAccount, name: ci.bot, namespace: ci-system}",
    ),
];

/// Manifests that passed an earlier schema although the objects built from them would be refused (a ResourceQuota
/// or LimitRange rejects the key or quantity); kept apart as regression cases. Same layout as [`CASES`].
const GAPS: &[(&str, &str, &[&str])] = &[
    // The quantity pattern allows a fractional exponent; Kubernetes' quantity grammar does not,
    // so the ResourceQuota the operator makes from it is refused.
    (
        "quota quantity with a fractional exponent",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, quota: {hard: {requests.cpu: 1e1.5}}}",
        &["spec.quota.hard.requests.cpu", "should match"],
    ),
    // Resource names are only checked for syntax; ResourceQuota wants a standard resource or a
    // domain-qualified one.
    (
        "quota resource name that ResourceQuota refuses",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, quota: {hard: {requests.foo: '1'}}}",
        &["spec.quota.hard", "resource"],
    ),
    // LimitRange only takes container resources (cpu, memory, ephemeral-storage, extended).
    (
        "limitRange resource name that LimitRange refuses",
        "kind: Project\nmetadata: {name: e2e-api-invalid}\nspec: {workspace: ws, limitRange: {default: {pods: '1'}}}",
        &["spec.limitRange.default", "resource"],
    ),
    // members[].role is documented as a built-in role or one listed in spec.roles.
    (
        "workspace member with a role it does not define",
        "kind: Workspace\nmetadata: {name: e2e-api-invalid}\nspec: {members: [{role: ghost, subjects: [{kind: Group, name: g}]}]}",
        &["spec.members", "must be admin, developer, contributor, viewer or a role listed in spec.roles", "spec.roles"],
    ),
];

/// `kubectl explain` paths and phrases of their doc comments (whitespace is normalized, since
/// explain wraps lines).
const EXPLAIN: &[(&str, &[&str])] = &[
    (
        "project.spec.quota",
        &[
            "ResourceQuota, merged key by key over the workspace's `projectDefaults.quota`.",
            "Hard limits by resource name, as in a ResourceQuota",
        ],
    ),
    (
        "workspace.spec.budget",
        &[
            "The most all projects of the workspace may be granted together, summed over their quotas.",
            "reason `BudgetExceeded`",
            "resources not named here are not limited by the budget",
        ],
    ),
    (
        "project.spec.expiresAt",
        &["When the project expires (RFC 3339", "reason `Expired`", "kubectl zenml project prune"],
    ),
    (
        "workspace.spec.defaultProject",
        &["with ZenML project ID `default`", "Defaults to `<projectNamePrefix>default`", "reason `NameConflict`"],
    ),
    (
        "projectrolebinding.spec.subjects",
        &[
            "Who gets the role: users, groups (teams), or ServiceAccounts (of this or another project).",
            "For a ServiceAccount outside any project: its namespace.",
            "User, Group or ServiceAccount.",
        ],
    ),
];

/// Doc comments `kubectl explain` does not show (see `known_explain_gaps`).
const EXPLAIN_GAPS: &[(&str, &[&str])] = &[
    // Regression: the enum type's doc comment used to replace the field's own.
    (
        "project.spec.networkIsolation",
        &["Defaults to the workspace's `projectDefaults.networkIsolation`, else Project."],
    ),
    (
        "workspace.spec.projectDefaults.networkIsolation",
        &["Default network isolation: None, Project (the default) or Workspace."],
    ),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn with_api_version(yaml: &str) -> String {
    format!("{API_VERSION}\n{yaml}\n")
}

/// `kubectl apply --dry-run=server` of one manifest (without `apiVersion`).
fn dry_run(yaml: &str) -> Output {
    e2e::run_stdin(kubectl().args(["apply", "--dry-run=server", "-f", "-"]), &with_api_version(yaml))
}

/// Checks one invalid case; `Some` describes how it failed.
fn check_refused(name: &str, yaml: &str, expected: &[&str]) -> Option<String> {
    let out = dry_run(yaml);
    let missing: Vec<&str> = expected.iter().copied().filter(|e| !out.stderr.contains(e)).collect();
    if !out.success() && missing.is_empty() {
        return None;
    }
    let problem =
        if out.success() { "was ADMITTED".to_owned() } else { format!("was refused, but the error lacks {missing:?}") };
    Some(format!(
        "case {name:?} {problem}\n--- manifest:\n{}--- stdout:\n{}--- stderr:\n{}",
        with_api_version(yaml),
        out.stdout,
        out.stderr
    ))
}

/// Runs `check` on every item, a few at a time, and returns what it reported.
fn check_all<T: Sync>(items: &[T], check: impl Fn(&T) -> Option<String> + Sync) -> Vec<String> {
    const WORKERS: usize = 4;
    let size = items.len().div_ceil(WORKERS).max(1);
    let check = &check;
    std::thread::scope(|s| {
        let workers: Vec<_> = items
            .chunks(size)
            .map(|chunk| s.spawn(move || chunk.iter().filter_map(check).collect::<Vec<_>>()))
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("checker thread")).collect()
    })
}

fn assert_all_refused(cases: &[(&str, &str, &[&str])]) {
    let failures = check_all(cases, |&(name, yaml, expected)| check_refused(name, yaml, expected));
    assert!(
        failures.is_empty(),
        "{} of {} invalid manifests misbehaved:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn invalid_manifests_are_refused_naming_the_field() {
    install_crds();
    assert!(CASES.len() >= 35, "only {} cases", CASES.len());
    assert_all_refused(CASES);
}

#[test]
fn formerly_admitted_manifests_are_refused() {
    install_crds();
    assert_all_refused(GAPS);
}

#[test]
fn valid_edge_cases_are_admitted() {
    install_crds();
    let failures = check_all(VALID, |&(name, yaml)| {
        let out = dry_run(yaml);
        (!out.success() || !out.stdout.contains("(server dry run)")).then(|| {
            format!(
                "valid case {name:?} was refused\n--- manifest:\n{}--- stderr:\n{}",
                with_api_version(yaml),
                out.stderr
            )
        })
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every YAML file under `dir`, recursively, except kustomizations.
fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(manifests(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && path.file_stem().is_some_and(|s| s != "kustomization")
        {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn examples_are_admitted() {
    install_crds();
    let examples = repo_root().join("examples");
    // examples/gitops/ holds Flux and Argo CD objects, applied by the GitOps tests (e2e/tests/gitops) where those
    // tools' CRDs and namespaces exist.
    let files: Vec<PathBuf> =
        manifests(&examples).into_iter().filter(|f| !f.starts_with(examples.join("gitops"))).collect();
    assert!(files.len() >= 3, "examples: {files:?}");
    for file in &files {
        let out = run_ok(kubectl().args(["apply", "--dry-run=server", "-f"]).arg(file));
        assert!(out.contains("(server dry run)"), "{}: {out}", file.display());
    }
    let out = run_ok(kubectl().args(["apply", "--dry-run=server", "-k"]).arg(&examples));
    for kind in [
        "workspace.zenml.io/",
        "project.zenml.io/",
        "projectrolebinding.zenml.io/",
        "clusterrole.rbac.authorization.k8s.io/",
    ] {
        assert!(out.lines().any(|l| l.starts_with(kind)), "kubectl apply -k examples/ made no {kind}:\n{out}");
    }
}

fn create(yaml: &str) {
    let out = e2e::run_stdin(kubectl().args(["create", "-f", "-"]), &with_api_version(yaml));
    assert!(out.success(), "cannot create:\n{yaml}\n{}", out.stderr);
}

fn patch(kind: &str, name: &str, patch: serde_json::Value) -> Output {
    run(kubectl().args(["patch", kind, name, "--type=merge", "-p", &patch.to_string()]))
}

fn get_field(kind: &str, name: &str, json_path: &str) -> String {
    run_ok(kubectl().args(["get", kind, name, "-o", &format!("jsonpath={json_path}")]))
}

#[test]
fn workspace_of_a_project_and_project_of_a_binding_are_immutable() {
    install_crds();
    let project = unique("e2e-api-immutable");
    let binding = unique("e2e-api-immutable");
    let (workspace, other_workspace) = (unique("e2e-api-ws-a"), unique("e2e-api-ws-b"));
    let mut cleanup = Cleanup::without_operator(FINALIZER_GRACE);
    cleanup.project(&project);
    cleanup.binding(&binding);

    create(&format!(
        "kind: Project\nmetadata: {{name: {project}}}\nspec: {{workspace: {workspace}, displayName: Before}}"
    ));
    let moved = patch("project", &project, serde_json::json!({"spec": {"workspace": other_workspace}}));
    assert!(
        !moved.success() && moved.stderr.contains("spec.workspace") && moved.stderr.contains("workspace is immutable"),
        "moving a project to another workspace must be refused: {moved:?}"
    );
    let renamed = patch("project", &project, serde_json::json!({"spec": {"displayName": "After"}}));
    assert!(renamed.success(), "displayName is mutable: {renamed:?}");
    assert_eq!(get_field("project", &project, "{.spec.displayName} {.spec.workspace}"), format!("After {workspace}"));

    create(&format!(
        "kind: ProjectRoleBinding\nmetadata: {{name: {binding}}}\nspec: {{project: {project}, role: viewer, subjects: [{{kind: Group, name: readers}}]}}"
    ));
    let moved =
        patch("projectrolebinding", &binding, serde_json::json!({"spec": {"project": unique("e2e-api-other")}}));
    assert!(
        !moved.success() && moved.stderr.contains("spec.project") && moved.stderr.contains("project is immutable"),
        "moving a binding to another project must be refused: {moved:?}"
    );
    let promoted = patch("projectrolebinding", &binding, serde_json::json!({"spec": {"role": "developer"}}));
    assert!(promoted.success(), "role is mutable: {promoted:?}");
    assert_eq!(
        get_field("projectrolebinding", &binding, "{.spec.role} {.spec.project}"),
        format!("developer {project}")
    );
}

/// Collapses runs of whitespace into one space.
fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Waits until `kubectl explain` of each path shows all its phrases (the API server publishes a
/// new CRD's OpenAPI a few seconds after it is established).
async fn assert_explained(paths: &[(&str, &[&str])]) {
    for &(path, phrases) in paths {
        eventually(TIMEOUT, &format!("`kubectl explain {path}` to show its doc comments"), || async move {
            let out = run(kubectl().args(["explain", path]));
            let text = normalize(&out.stdout);
            let missing: Vec<&str> = phrases.iter().copied().filter(|p| !text.contains(&normalize(p))).collect();
            if out.success() && missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}\n--- stdout:\n{}--- stderr:\n{}", out.stdout, out.stderr))
            }
        })
        .await;
    }
}

#[tokio::test]
async fn explain_shows_the_doc_comments() {
    install_crds();
    assert_explained(EXPLAIN).await;
}

#[tokio::test]
async fn explain_shows_field_docs_of_enum_fields() {
    install_crds();
    assert_explained(EXPLAIN_GAPS).await;
}

/// The header tokens of each table in `kubectl get` output.
fn headers(out: &str) -> Vec<Vec<&str>> {
    out.lines().filter(|l| l.starts_with("NAME ")).map(|l| l.split_whitespace().collect()).collect()
}

/// The row whose first column is `name`, as tokens.
fn row<'a>(out: &'a str, name: &str) -> Option<Vec<&'a str>> {
    out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|tokens| tokens.first() == Some(&name))
}

#[tokio::test]
async fn get_zenml_lists_every_kind_with_its_columns() {
    install_crds();
    let workspace = unique("e2e-api-get");
    let project = unique("e2e-api-get");
    let binding = unique("e2e-api-get");
    let mut cleanup = Cleanup::without_operator(FINALIZER_GRACE);
    cleanup.workspaces.push(workspace.clone());
    cleanup.project(&project);
    cleanup.binding(&binding);
    create(&format!("kind: Workspace\nmetadata: {{name: {workspace}}}\nspec: {{displayName: e2e}}"));
    create(&format!("kind: Project\nmetadata: {{name: {project}}}\nspec: {{workspace: {workspace}}}"));
    create(&format!(
        "kind: ProjectRoleBinding\nmetadata: {{name: {binding}}}\nspec: {{project: {project}, role: viewer, subjects: [{{kind: Group, name: readers}}]}}"
    ));

    // kubectl may need to refresh its discovery cache before it knows the `zenml` category.
    let out = eventually(TIMEOUT, "`kubectl get zenml` to list the three objects", || {
        let (workspace, project, binding) = (&workspace, &project, &binding);
        async move {
            let out = run(kubectl().args(["get", "zenml"]));
            let rows = [
                format!("workspace.zenml.io/{workspace}"),
                format!("project.zenml.io/{project}"),
                format!("projectrolebinding.zenml.io/{binding}"),
            ];
            if out.success() && rows.iter().all(|r| row(&out.stdout, r).is_some()) {
                Ok(out.stdout)
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            }
        }
    })
    .await;

    let tables = headers(&out);
    for expected in [
        vec!["NAME", "PROJECTS", "READY", "AGE"],
        vec!["NAME", "WORKSPACE", "NAMESPACE", "READY", "OWNERS", "FROZEN", "AGE"],
        vec!["NAME", "PROJECT", "ROLE", "READY", "AGE"],
    ] {
        assert!(tables.contains(&expected), "no table with the columns {expected:?} in:\n{out}");
    }
    let project_row = row(&out, &format!("project.zenml.io/{project}")).expect("project row");
    assert_eq!(project_row.get(1), Some(&workspace.as_str()), "{out}");
    let binding_row = row(&out, &format!("projectrolebinding.zenml.io/{binding}")).expect("binding row");
    assert_eq!(binding_row.get(1..3), Some(&[project.as_str(), "viewer"][..]), "{out}");

    let names = run_ok(kubectl().args(["get", "proj,ws,prb", "-o", "name"]));
    for expected in [
        format!("project.zenml.io/{project}"),
        format!("workspace.zenml.io/{workspace}"),
        format!("projectrolebinding.zenml.io/{binding}"),
    ] {
        assert!(names.lines().any(|l| l == expected), "`kubectl get proj,ws,prb` lacks {expected}:\n{names}");
    }
}
