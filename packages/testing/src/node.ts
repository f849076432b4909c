/**
 * @butterfly/testing/node: the Node-only half of the shared test code (child processes, HTTP, the
 * file system, `@butterfly/node-platform`); the rest is in `@butterfly/testing` (./index.ts).
 *
 * Processes
 * - `runCli(bin, args, { env })`: runs a built CLI to completion: `{ code, stdout, stderr }`.
 * - `start(bin, args, env?, moreArgs?)`: a long-running CLI process (`Proc`) whose output can be
 *   awaited (`waitFor(re)`) and which `stop()` always ends; `until(url, predicate)` polls JSON.
 * - `startWorkerProcess(serverUrl, name, opts)`: a worker joined to mesh 'default' (honest
 *   `butterfly-worker join`, or the faulty worker fixture when `opts.fault` is set).
 * - `referenceText(model, prompt, maxTokens, env)`: the one-process greedy text (`generate`);
 *   `completionText(url, prompt, maxTokens)`: a server's greedy /v1/completions text.
 * - `SERVER_BIN`, `WORKER_BIN`, `TRAIN_BIN`: the built CLIs; `FAULTY_WORKER_BIN`: the fixture
 *   src/fixtures/faulty-worker.ts as compiled by vitest's global setup (tsconfig.fixtures.json)
 *   to .cache/test-fixtures/fixtures/faulty-worker.js.
 *
 * The Hugging Face test hub
 * - `startTestHub()`: a local hub (`TestHub`: repositories, tokens, injected `Fault`s, a request
 *   log); `filesOf(dir)`, `sha256Hex(bytes)`.
 * - `writeShardedModel`, `shardName`, `twoShardsAt`: sharded safetensors checkpoints.
 * - `startHubFixture(prefix)`: a hub plus synthetic:tiny, single-file and sharded, in a fresh
 *   temporary directory (`HubFixture`).
 *
 * llama.cpp and onnxruntime-node as greedy decoders
 * - `loadLlamaCpp()`: node-llama-cpp from .cache/llama-cpp (`llamaCppDir()`), `greedy(gguf, prompt,
 *   steps)` with each step's top-2 logit gap; `ortGreedy(config, weights, stages, prompt, steps)`.
 *
 * Real daemons on loopback (scripts/ensure-apt-packages.mjs installs them for `npm test`)
 * - `startCoturn(secret)`: coturn with a TURN REST secret (`Coturn`: url, allocations, waitFor).
 * - `startRedis(options?)`: an empty, non-persistent redis-server on a free port (`RedisServer`:
 *   url, port, pid, stop, kill, restart on the same port with its data gone).
 *   `butterflyAclArgs(password)` and `aclUrl(url, password)`: docs/deploy.md's ACL user.
 * - `startTcpProxy(backends)`: a stand-in load balancer on 127.0.0.1 that sends each connection
 *   to the first live backend (`TcpProxy`: url, port, connections(), close()).
 *
 * Fault injection in a real worker
 * - `faultyBackend(opts)`: the node backend with every stage wrapped in a `FaultyStage`.
 */
export * from './cli.js'
export * from './completions.js'
export * from './coturn.js'
export * from './engine-helpers.js'
export * from './faulty-backend.js'
export * from './hub-fixture.js'
export * from './hub-server.js'
export * from './llama-cpp-runner.js'
export * from './processes.js'
export * from './redis.js'
export * from './sharded-model.js'
export * from './tcp-proxy.js'
