-- Argo CD health check for the zenml.io kinds (Workspace, Project, ProjectRoleBinding): one script for all three,
-- set in argocd-cm as resource.customizations.health.zenml.io_<Kind> (README, "Argo CD"). Without it Argo CD calls
-- every one of them Healthy, a refused project included.
--
-- Healthy only when the operator reports Ready=True for the object's current generation. A refusal (BudgetExceeded,
-- RoleNotAllowed, NamespaceConflict, ...) is Degraded with the operator's reason and message; a reason this script
-- does not know counts as a refusal too, so a new one can never show green. What resolves by itself is Progressing:
-- no status yet, a status of an older generation, a deletion, a binding waiting for its project (the project says
-- why).
local hs = {}

local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "being deleted"
  if ready ~= nil and ready.status == "False" and ready.message ~= nil and ready.message ~= "" then
    hs.message = "being deleted: " .. ready.message
  end
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the zenml-operator to report a Ready condition"
  return hs
end

-- The condition's own observedGeneration says which spec it judged; status.observedGeneration is the fallback.
local observed = ready.observedGeneration
if observed == nil then
  observed = obj.status.observedGeneration
end
local generation = obj.metadata.generation
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the zenml-operator to observe generation " .. tostring(generation)
  return hs
end

local message = ready.message or ""
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end

if ready.status ~= "False" then
  hs.status = "Progressing"
  hs.message = message
  return hs
end

-- Reasons that pass without anyone acting: a deletion or namespace termination in progress, a workspace waiting for
-- its projects to go, a binding waiting for its project to be provisioned.
local passing = {
  Deleting = true,
  NamespaceTerminating = true,
  ProjectsRemain = true,
  ProjectNotReady = true,
}
local reason = ready.reason or ""
if passing[reason] then
  hs.status = "Progressing"
else
  hs.status = "Degraded"
end
if reason ~= "" then
  hs.message = reason .. ": " .. message
else
  hs.message = message
end
return hs
