-- flare.dpo: preference pairs from the policy's own samples, for the trainer's dpo loss.
--
--   dpo.pairs(groups, scores) -> datums, info
--       groups[g] is a list of sampler completions of one prompt, scores[g][i] a verifier's
--       score of completion i. Each group with two different scores gives one pair: chosen =
--       its best completion, rejected = its worst (the first of equals). datums = {chosen_1,
--       rejected_1, chosen_2, ...}, as the dpo loss takes them, each a flare.grpo.datum (loss
--       tokens = the completion). info = {pairs =, dropped_groups =}
--   dpo.correct_rate(groups, verdicts) -> fraction of completions whose verdict is true
local grpo = require("flare.grpo")

local M = {}

function M.pairs(groups, scores)
  local datums, info = {}, {pairs = 0, dropped_groups = 0}
  for g, group in ipairs(groups) do
    local cs, ss = grpo.completions_of(group), scores[g]
    if type(ss) ~= "table" or #ss ~= #cs then
      error("dpo.pairs: scores[" .. g .. "] must hold " .. #cs .. " numbers", 2)
    end
    local best, worst = 1, 1
    for i = 2, #cs do
      if ss[i] > ss[best] then best = i end
      if ss[i] < ss[worst] then worst = i end
    end
    if #cs < 2 or ss[best] == ss[worst] or #cs[best].tokens == 0 or #cs[worst].tokens == 0 then
      info.dropped_groups = info.dropped_groups + 1
    else
      datums[#datums + 1] = grpo.datum(cs[best], 0)
      datums[#datums + 1] = grpo.datum(cs[worst], 0)
      info.pairs = info.pairs + 1
    end
  end
  return datums, info
end

function M.correct_rate(groups, verdicts)
  local n, ok = 0, 0
  for g, group in ipairs(groups) do
    for i = 1, #grpo.completions_of(group) do
      n = n + 1
      if verdicts[g][i] then ok = ok + 1 end
    end
  end
  return n > 0 and ok / n or 0
end

return require("flare.args").checked(M, "flare.dpo", {
  pairs = {"groups:table", "scores:table"},
  correct_rate = {"groups:table", "verdicts:table"},
})
