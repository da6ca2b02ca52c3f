-- Bring your own two safetensors checkpoints: build the delta between them, put
-- it in the deployment's bucket, hotload it on top of the first, and verify by
-- sampling that the deployment now answers exactly as the second checkpoint does.
--
--   flare run scripts/hotload.lua --prev=a.safetensors --new=b.safetensors
--   flare run scripts/hotload.lua        # makes two checkpoints with a trainer first
-- The bucket must be a local directory (the emulator's file:// buckets).
local run = flare.recipe{name = "hotload", config = {
  prev = "", new = "", deployment_id = "hotload-demo",
    base_model = "accounts/local/models/tiny-gpt",
  prompt = "hello:", max_tokens = 16, on_exit = "scale_to_zero",
}}
local c = run.config
if (c.prev == "") ~= (c.new == "") then
  flare.error{code = "config",
    message = "give both --prev and --new (or neither, to make two checkpoints)"}
end
if run:plan{
  "deployment " .. c.deployment_id .. ", on exit: " .. c.on_exit,
  c.prev == "" and "make two checkpoints with a trainer (one SGD step apart)" or ("checkpoints " ..
    c.prev .. " -> " .. c.new),
  "delta -> bucket, hotload base then delta, compare greedy samples with the new checkpoint " ..
    "loaded as a base",
} then return end

local fs = flare.fs
local stamp = run.id:gsub("[^%w]", "")

flare.with_deployment({deployment_id = c.deployment_id, base_model = c.base_model,
  max_replica_count = 1},
  function(info, fw)
  local mgr = fw.deployments
  local bucket = tostring(info.hot_load_bucket_url or ""):match("^file://(.*)$")
  if not bucket then
    flare.error{code = "unsupported", message = "bucket " .. tostring(info.hot_load_bucket_url) ..
      " is not a local directory"}
  end
  bucket = bucket:gsub("/*$", "")
  local a, b, d = "ckpt-a-" .. stamp, "ckpt-b-" .. stamp, "ckpt-delta-" .. stamp
  local function file_of(id, name) return bucket .. "/" .. id ..
    "/" .. (name or "model.safetensors") end

  if c.prev == "" then
    -- Two full checkpoints from a trainer: the initial weights, then after one step.
    local trainer = fw:trainer{base_model = c.base_model,
      hot_load_deployment_id = info.deployment_id}
    run:on_exit(function() trainer:close() end, "close trainer")
    trainer:save_weights_for_sampler(a, {checkpoint_type = "base"})
    local tokens = {}
    for ch in ("hello: world"):gmatch(".") do tokens[#tokens + 1] = ch:byte() end
    trainer:forward_backward({{tokens = {unpack(tokens, 1, #tokens - 1)},
      target_tokens = {unpack(tokens, 2)}}},
      "cross_entropy")
    trainer:optim_step{learning_rate = 1e-2}
    trainer:save_weights_for_sampler(b, {checkpoint_type = "base"})
  else
    for id, src in pairs({[a] = c.prev, [b] = c.new}) do
      fs.mkdir_p(bucket .. "/" .. id)
      fs.write_file_atomic(file_of(id), assert(fs.read_file(src)))
    end
  end

  fs.mkdir_p(bucket .. "/" .. d)
  local t0 = flare.clock()
  local delta = flare.delta.compress_files(file_of(a), file_of(b), file_of(d, "model.delta"),
    {base_identity = a})
  print(string.format("delta: %d -> %d bytes (%.1fx smaller) in %.2f s", delta.new_bytes,
    delta.delta_bytes,
    delta.new_bytes / math.max(1, delta.delta_bytes), flare.clock() - t0))

  local sampler = fw:sampler{deployment = info}
  local function greedy()
    local s = sampler:sample{prompts = {c.prompt}, max_tokens = c.max_tokens, temperature = 0}[1][1]
    return s.text, s.snapshot_identity
  end
  local function load(id, meta)
    mgr:hotload_and_wait{deployment_id = info.deployment_id, base_model = c.base_model,
      snapshot_identity = id, incremental_snapshot_metadata = meta, quiet = true}
  end
  load(a)
  -- "alder32" (sic) is the protocol's own spelling of Adler-32.
  load(d, {previous_snapshot_identity = a, compression_format = "flare-delta-v1",
    checksum_format = "alder32"})
  local via_delta, serving = greedy()
  load(b)
  local via_base = greedy()
  print(string.format("serving %s: %q", tostring(serving), via_delta))
  print(string.format("new checkpoint as a base: %q", via_base))
  if serving ~= d or via_delta ~= via_base then
    flare.error{code = "hotload_mismatch", message =
      "the delta hotload does not serve the new checkpoint"}
  end
  print("ok: the delta reproduces the new checkpoint")
end, {fw = run:connect(), on_exit = c.on_exit})
