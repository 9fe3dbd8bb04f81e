"""The serving supervisor's parts, behind the façade `registry.serving.supervisor.Supervisor`.

- `state`: what the supervisor knows (policy, each deployment's runtime, tracked workers) and the
  small operations on it (locks, background tasks, the state file).
- `ledger`: event-ledger writes, postponed and retried in order while the database refuses them.
- `pool`: starting (the one `spawn` call), promoting, draining and stopping workers.
- `swaps`: all-or-nothing switches of a deployment's version or worker count.
- `actions`: deploy, rollback, stop, scale and status, as the control API asks for them.
- `healing`: crashed and hung workers restarted with backoff; a crash loop rolled back.
- `adoption`: workers a previous supervisor left running, and their reports and sockets.
- `reconcile`: the start-up pass that makes running servers match the registry.
"""
