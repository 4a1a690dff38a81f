-- Argo CD health check for spotplan.dev/SpotPlan (gopher-lua, Lua 5.1).
-- Progressing until the controller has planned the current spec and Ready is True; Degraded,
-- with the controller's reason and message, when Ready is False; Suspended with spec.suspend.
local hs = {status = "Progressing", message = "waiting for the spotplan controller to plan this SpotPlan"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "waiting for the spotplan controller to plan generation " .. generation
  return hs
end
local ready, suspended
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    ready = c
  elseif c.type == "Suspended" then
    suspended = c
  end
end
if suspended ~= nil and suspended.status == "True" then
  hs.status = "Suspended"
  hs.message = suspended.message or "spec.suspend is true"
  return hs
end
if ready == nil or ready.status == "Unknown" then
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
else
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
end
return hs
