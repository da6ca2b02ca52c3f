-- flare.repl.api: the flare API with one-line docs. The single source of the
-- REPL's :help and of docs/api.md (tools/gen_api_docs.lua). Each section is
-- {title =, entries = {{call, doc}, ...}}; `call` starts with the expression
-- users type (flare.x.y, fw.deployments:get, ...).
return {
  {
    title = "Core",
    entries = {
      { "flare.connect(opts)",
        "connect to Fireworks (FIREWORKS_API_KEY) or, without a key, the local emulator" },
      { "flare.version", "the flare version string" },
      { "flare.sleep(seconds)", "sleep; Ctrl-C interrupts it at once" },
      { "flare.clock()", "monotonic seconds, for measuring durations" },
      { "flare.time()", "wall-clock seconds since the epoch" },
      { "flare.error{code=, message=, status=, retryable=}", "raise a structured error table" },
      { "flare.defer(fn, name)", "run fn(reason) when the script or REPL ends, however it ends" },
      { "flare.cleanup.run_all(reason)", "run the pending cleanups now; returns how many failed" },
    },
  },
  {
    title = "Deployments (fw.deployments, a DeploymentManager)",
    entries = {
      { "fw.deployments:create_or_get(config, opts)",
        "create a deployment or return the existing one ({force_recreate=})" },
      { "fw.deployments:get(id)", "DeploymentInfo table, or nil when there is no such deployment" },
      { "fw.deployments:list()", "every deployment of the account" },
      { "fw.deployments:wait_for_ready(id, opts)",
        "wait until READY ({timeout_s=600, poll_interval_s=15})" },
      { "fw.deployments:hotload_and_wait{deployment_id=, base_model=, snapshot_identity=, ...}",
        "load a snapshot (base or delta) and wait until it serves" },
      { "fw.deployments:warmup(model)", "send one request so the first real one is fast" },
      { "fw.deployments:scale_to_zero(id)", "release the replicas, keep the deployment" },
      { "fw.deployments:delete(id)", "delete the deployment" },
    },
  },
  {
    title = "Training, weight sync and sampling",
    entries = {
      { "fw:trainer{base_model=, lora_rank=, learning_rate=}", "a policy trainer client" },
      { "flare.weight_syncer{policy_client=, deploy_mgr=, deployment_id=, base_model=}",
        "saves trainer snapshots and hotloads them (base first, deltas after)" },
      { "syncer:save_and_hotload(name)", "save a snapshot and hotload it onto the deployment" },
      { "fw:sampler{deployment=}", "a sampler for a deployment" },
      { "sampler:sample{prompts=, n=, max_tokens=, temperature=, logprobs=}",
        "groups[prompt][sample] completions, many requests in flight" },
      { "sampler:submit{...}", "the same as sample, returning a future: future:wait()" },
    },
  },
  {
    title = "Experiment scripts",
    entries = {
      { "flare.recipe{name=, config=}",
        "a run: command-line config, runs/<name>/<timestamp>/, metrics and checkpoints" },
      { "run:log{step=, ...}", "append a metrics line to metrics.jsonl" },
      { "run:checkpoint{step=, state=}", "append a checkpoint record (resumable with --resume)" },
      { "flare.grpo.build_datums(groups, rewards, opts)",
        "GRPO advantages and trainer datums from sampled groups" },
      { "flare.distill.rejection_sample{sampler=, problems=, verify=, k=}",
        "keep teacher samples that pass a verifier" },
      { "flare.tasks.get(name, {seed=})",
        "seeded problem generator with a verifier: addition, reverse, sort, countdown, vowels" },
      { "flare.verify.math_answer(text, expected)",
        "whether the extracted answer equals expected numerically" },
    },
  },
  {
    title = "Reports",
    entries = {
      { "flare.report.load(run_dir)", "a run's config, metric series and checkpoints" },
      { "flare.report.write_html(run, path)",
        "a self-contained HTML report with a plot per metric" },
      { "flare.report.term_chart(series, opts)",
        "a compact Unicode chart of one metric for the terminal" },
      { "flare.report.term_summary(run, opts)",
        "the main metric's chart and a sparkline per other metric" },
    },
  },
  {
    title = "Deltas, files, JSON, processes, HTTP",
    entries = {
      { "flare.delta.compress_files(prev, new, out, opts)",
        "lossless delta between two safetensors checkpoints" },
      { "flare.delta.apply_files(prev, diff, out, opts)",
        "rebuild the new checkpoint from the previous one and a delta" },
      { "flare.delta.inspect(diff_path)", "what a delta file holds, tensor by tensor" },
      { "flare.json.encode(value, {pretty=, sort_keys=})", "JSON text of a Lua value" },
      { "flare.json.decode(text)", "a Lua value from JSON text (flare.json.null for null)" },
      { "flare.fs.read_file(path)", "the file's bytes, or nil and a message" },
      { "flare.fs.write_file_atomic(path, data)", "write through a temporary file and rename" },
      { "flare.proc.run{argv=, stdin=, timeout_s=}", "run a child process without a shell" },
      { "flare.http.request{method=, url=, body=}", "one HTTP request on the shared client" },
      { "flare.emulator.start{state_dir=}", "start the local emulator in this process" },
    },
  },
  {
    title = "REPL commands",
    entries = {
      { ":help [word]", "this list, or the entries that mention word" },
      { ":reload NAME", "re-require module NAME (and rebind globals that held it)" },
      { ":quit", "leave the REPL (as Ctrl-D); registered cleanups run" },
    },
  },
}
