-- Argo CD health check for kubebots.io/Bot (install: argocd-cm-patch.yaml next to this file).
--
-- The kubebots operator writes kstatus-style conditions (Ready, Stalled, Reconciling, ...):
--   Healthy     Ready=True, and the operator has observed the current spec
--               (status.observedGeneration == metadata.generation)
--   Degraded    Stalled=True: the spec cannot be served as written (message from Stalled)
--   Progressing anything else, including no status yet and an older observedGeneration
-- Written for Lua 5.1 (Argo CD runs health checks with gopher-lua).
local hs = {}

local function findCondition(conditions, conditionType)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if type(condition) == "table" and condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function text(condition)
  if condition == nil then
    return nil
  end
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return nil
end

local status = obj.status
if type(status) ~= "table" then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubebots operator to report status"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if generation ~= nil and status.observedGeneration ~= generation then
  -- Conditions describe an older spec (kstatus: in progress until the generation is observed).
  hs.status = "Progressing"
  hs.message = "Waiting for the kubebots operator to observe generation " .. tostring(generation)
  return hs
end

local ready = findCondition(status.conditions, "Ready")
local stalled = findCondition(status.conditions, "Stalled")
local reconciling = findCondition(status.conditions, "Reconciling")

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled) or "Stalled"
  return hs
end

if ready ~= nil and ready.status == "True" and generation ~= nil then
  hs.status = "Healthy"
  hs.message = text(ready) or "Ready"
  return hs
end

hs.status = "Progressing"
if reconciling ~= nil and reconciling.status == "True" and text(reconciling) ~= nil then
  hs.message = text(reconciling)
elseif text(ready) ~= nil then
  hs.message = text(ready)
else
  hs.message = "Waiting for the Bot to become Ready"
end
return hs
