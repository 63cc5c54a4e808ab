//! The project's network wall: which pods may connect in (isolation) and where its pods may connect out (egress).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::{Egress, EgressMode, NetworkIsolation, Project, Workspace};

/// The namespace whose pods serve the cluster's DNS, unless the operator is told otherwise.
pub const DEFAULT_DNS_NAMESPACE: &str = "kube-system";
/// The label every namespace carries with its own name (set by the API server, so it cannot be forged).
const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// What a restricted egress must still reach, learnt from the cluster: pods that orchestrate pipelines talk to the
/// API server, and every pod resolves names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkFacts {
    /// The API server's addresses and ports, as the `kubernetes` Service's EndpointSlices (or the operator's
    /// `--api-server-endpoint` flags) give them. A NetworkPolicy sees connections after the Service's address is
    /// translated, so the endpoints are what egress must allow, not the Service's cluster IP.
    pub api_server: BTreeSet<(IpAddr, i32)>,
    /// The namespace whose pods serve DNS on port 53.
    pub dns_namespace: String,
}

impl Default for NetworkFacts {
    fn default() -> Self {
        Self { api_server: BTreeSet::new(), dns_namespace: DEFAULT_DNS_NAMESPACE.to_owned() }
    }
}

impl NetworkFacts {
    /// The endpoints of the `kubernetes` Service: every ready address with every port of each slice.
    pub fn api_server_from<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> BTreeSet<(IpAddr, i32)> {
        let mut endpoints = BTreeSet::new();
        for slice in slices {
            let ports: Vec<i32> = slice.ports.iter().flatten().filter_map(|p| p.port).collect();
            let ready = slice.endpoints.iter().filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
            for address in ready.flat_map(|e| e.addresses.iter()) {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    endpoints.extend(ports.iter().map(|port| (ip, *port)));
                }
            }
        }
        endpoints
    }
}

/// The network isolation a project gets: its own setting, else the workspace default, else Project.
pub fn isolation(project: &Project, workspace: &Workspace) -> NetworkIsolation {
    project
        .spec
        .network_isolation
        .or_else(|| workspace.spec.project_defaults.as_ref().and_then(|d| d.network_isolation))
        .unwrap_or_default()
}

/// The egress a project gets: its own, else the workspace default, else Open. A project's egress replaces the
/// default as a whole: lists are not merged, so what a project may reach is read in one place.
pub fn egress(project: &Project, workspace: &Workspace) -> Egress {
    project
        .spec
        .egress
        .clone()
        .or_else(|| workspace.spec.project_defaults.as_ref().and_then(|d| d.egress.clone()))
        .unwrap_or_default()
}

/// Whether the project's egress needs the API server's endpoints and the operator knows none: its pods could not
/// reach the API server, which the status says.
pub fn api_server_unknown(project: &Project, workspace: &Workspace, facts: &NetworkFacts) -> bool {
    egress(project, workspace).mode != EgressMode::Open && facts.api_server.is_empty()
}

/// The wall, or none when the project is neither isolated nor restricted. `metadata` is the child's.
pub fn policy(
    project: &Project,
    workspace: &Workspace,
    facts: &NetworkFacts,
    metadata: ObjectMeta,
) -> Option<NetworkPolicy> {
    let ingress = ingress_rule(project, workspace);
    let egress = egress(project, workspace);
    let egress = (egress.mode != EgressMode::Open).then(|| egress_rules(project, &egress, facts));
    if ingress.is_none() && egress.is_none() {
        return None;
    }
    let types = [ingress.is_some().then_some("Ingress"), egress.is_some().then_some("Egress")];
    Some(NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(types.into_iter().flatten().map(str::to_owned).collect()),
            ingress: ingress.map(|rule| vec![rule]),
            egress,
        }),
    })
}

/// Ingress only from the namespace itself, or from the workspace's namespaces; none without isolation.
fn ingress_rule(project: &Project, workspace: &Workspace) -> Option<NetworkPolicyIngressRule> {
    let from = match isolation(project, workspace) {
        NetworkIsolation::None => return None,
        NetworkIsolation::Workspace => namespaces_labelled(labels::WORKSPACE, &project.spec.workspace),
        NetworkIsolation::Project => {
            NetworkPolicyPeer { pod_selector: Some(LabelSelector::default()), ..Default::default() }
        }
    };
    Some(NetworkPolicyIngressRule { from: Some(vec![from]), ports: None })
}

/// Workspace: the workspace's namespaces, DNS, the API server; AllowList adds the listed CIDRs and namespaces.
fn egress_rules(project: &Project, egress: &Egress, facts: &NetworkFacts) -> Vec<NetworkPolicyEgressRule> {
    let to = |peers: Vec<NetworkPolicyPeer>, ports: Option<Vec<NetworkPolicyPort>>| NetworkPolicyEgressRule {
        to: Some(peers),
        ports,
    };
    let mut rules = vec![
        to(vec![namespaces_labelled(labels::WORKSPACE, &project.spec.workspace)], None),
        to(
            vec![namespaces_labelled(NAMESPACE_NAME, &facts.dns_namespace)],
            Some(vec![port("UDP", 53), port("TCP", 53)]),
        ),
    ];
    // One rule per port, with every address that serves it: the usual case is one rule.
    let mut by_port: BTreeMap<i32, Vec<NetworkPolicyPeer>> = BTreeMap::new();
    for (ip, p) in &facts.api_server {
        by_port.entry(*p).or_default().push(ip_block(&host_cidr(*ip)));
    }
    rules.extend(by_port.into_iter().map(|(p, peers)| to(peers, Some(vec![port("TCP", p)]))));
    if egress.mode == EgressMode::AllowList {
        if !egress.cidrs.is_empty() {
            rules.push(to(egress.cidrs.iter().map(|c| ip_block(c)).collect(), None));
        }
        if !egress.namespaces.is_empty() {
            rules.push(to(egress.namespaces.iter().map(|n| namespaces_labelled(NAMESPACE_NAME, n)).collect(), None));
        }
    }
    rules
}

fn namespaces_labelled(key: &str, value: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ip_block(cidr: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer { ip_block: Some(IPBlock { cidr: cidr.to_owned(), except: None }), ..Default::default() }
}

fn host_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => format!("{ip}/32"),
        IpAddr::V6(ip) => format!("{ip}/128"),
    }
}

fn port(protocol: &str, port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { protocol: Some(protocol.to_owned()), port: Some(IntOrString::Int(port)), end_port: None }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};

    use super::*;
    use crate::{ProjectDefaults, ProjectSpec, WorkspaceSpec};

    fn project(isolation: NetworkIsolation, egress: Option<Egress>) -> Project {
        Project::new(
            "fraud",
            ProjectSpec { workspace: "ml".into(), network_isolation: Some(isolation), egress, ..Default::default() },
        )
    }

    fn workspace(egress: Option<Egress>) -> Workspace {
        Workspace::new(
            "ml",
            WorkspaceSpec {
                project_defaults: Some(ProjectDefaults { egress, ..Default::default() }),
                ..Default::default()
            },
        )
    }

    fn facts() -> NetworkFacts {
        NetworkFacts {
            api_server: BTreeSet::from([("10.0.0.5".parse().unwrap(), 6443), ("10.0.0.6".parse().unwrap(), 6443)]),
            ..Default::default()
        }
    }

    fn mode(mode: EgressMode) -> Option<Egress> {
        Some(Egress { mode, ..Default::default() })
    }

    fn spec(p: &Project, w: &Workspace, facts: &NetworkFacts) -> Option<NetworkPolicySpec> {
        policy(p, w, facts, ObjectMeta::default()).map(|np| np.spec.unwrap())
    }

    #[test]
    fn open_egress_restricts_only_ingress_and_no_wall_at_all_writes_no_policy() {
        let np = spec(&project(NetworkIsolation::Project, None), &workspace(None), &facts()).unwrap();
        assert_eq!(np.policy_types, Some(vec!["Ingress".to_owned()]));
        assert!(np.egress.is_none());
        assert!(spec(&project(NetworkIsolation::None, mode(EgressMode::Open)), &workspace(None), &facts()).is_none());
    }

    #[test]
    fn workspace_egress_allows_the_workspace_dns_and_the_api_servers_endpoints() {
        let w = workspace(mode(EgressMode::Workspace));
        let np = spec(&project(NetworkIsolation::Project, None), &w, &facts()).unwrap();
        assert_eq!(np.policy_types, Some(vec!["Ingress".to_owned(), "Egress".to_owned()]));
        let rules = np.egress.unwrap();
        assert_eq!(rules.len(), 3, "{rules:?}");
        let selector = |r: &NetworkPolicyEgressRule| {
            r.to.as_ref().unwrap()[0].namespace_selector.clone().unwrap().match_labels.unwrap()
        };
        assert_eq!(selector(&rules[0])[labels::WORKSPACE], "ml");
        assert!(rules[0].ports.is_none(), "any port within the workspace");
        assert_eq!(selector(&rules[1])[NAMESPACE_NAME], "kube-system");
        let dns: Vec<_> = rules[1].ports.iter().flatten().map(|p| p.protocol.clone().unwrap()).collect();
        assert_eq!(dns, ["UDP", "TCP"]);
        let api: Vec<_> = rules[2].to.iter().flatten().map(|p| p.ip_block.clone().unwrap().cidr).collect();
        assert_eq!(api, ["10.0.0.5/32", "10.0.0.6/32"]);
        assert_eq!(rules[2].ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(6443)));
    }

    #[test]
    fn an_allow_list_adds_its_cidrs_and_namespaces() {
        let egress = Egress {
            mode: EgressMode::AllowList,
            cidrs: vec!["203.0.113.0/24".into(), "2001:db8::/32".into()],
            namespaces: vec!["llm-gateway".into()],
        };
        let np = spec(&project(NetworkIsolation::None, Some(egress)), &workspace(None), &facts()).unwrap();
        assert_eq!(np.policy_types, Some(vec!["Egress".to_owned()]), "no isolation: ingress stays open");
        assert!(np.ingress.is_none());
        let rules = np.egress.unwrap();
        let cidrs: Vec<_> = rules[3].to.iter().flatten().map(|p| p.ip_block.clone().unwrap().cidr).collect();
        assert_eq!(cidrs, ["203.0.113.0/24", "2001:db8::/32"]);
        let ns = rules[4].to.as_ref().unwrap()[0].namespace_selector.clone().unwrap().match_labels.unwrap();
        assert_eq!(ns[NAMESPACE_NAME], "llm-gateway");
    }

    #[test]
    fn a_projects_egress_replaces_the_workspace_default_as_a_whole() {
        let w = workspace(Some(Egress {
            mode: EgressMode::AllowList,
            namespaces: vec!["llm-gateway".into()],
            ..Default::default()
        }));
        assert_eq!(egress(&project(NetworkIsolation::Project, None), &w).namespaces, ["llm-gateway"]);
        let own = project(NetworkIsolation::Project, mode(EgressMode::Workspace));
        assert_eq!(egress(&own, &w), Egress { mode: EgressMode::Workspace, ..Default::default() });
        let open = project(NetworkIsolation::Project, mode(EgressMode::Open));
        assert!(spec(&open, &w, &facts()).unwrap().egress.is_none(), "a project may be more open than the default");
    }

    #[test]
    fn restricted_egress_without_a_known_api_server_is_reported() {
        let p = project(NetworkIsolation::Project, mode(EgressMode::Workspace));
        let none = NetworkFacts::default();
        assert!(api_server_unknown(&p, &workspace(None), &none));
        assert!(!api_server_unknown(&p, &workspace(None), &facts()));
        assert!(!api_server_unknown(&project(NetworkIsolation::Project, None), &workspace(None), &none));
        assert_eq!(spec(&p, &workspace(None), &none).unwrap().egress.unwrap().len(), 2, "workspace and DNS only");
    }

    #[test]
    fn the_api_servers_endpoints_are_its_ready_addresses_on_every_port() {
        let endpoint = |ip: &str, ready| Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions { ready, ..Default::default() }),
            ..Default::default()
        };
        let slice = EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: vec![
                endpoint("10.0.0.5", Some(true)),
                endpoint("10.0.0.6", None),
                endpoint("10.0.0.7", Some(false)),
            ],
            ports: Some(vec![EndpointPort { port: Some(6443), ..Default::default() }]),
            metadata: Default::default(),
        };
        let found: Vec<_> = NetworkFacts::api_server_from([&slice]).into_iter().collect();
        assert_eq!(found, [("10.0.0.5".parse().unwrap(), 6443), ("10.0.0.6".parse().unwrap(), 6443)]);
    }
}
