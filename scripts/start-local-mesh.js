#!/usr/bin/env node
// `npm start`: the signal server and one local worker on the embedded default model, on
// loopback only. Prints the URL and a working curl example; Ctrl-C stops both.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const port = process.env.BUTTERFLY_PORT ?? '8080'
// The embedded default: the byte-level Shakespeare model trained by `npm run train:demo`.
const model = process.env.BUTTERFLY_MODEL ?? `${root}models/shakespeare`

function run(bin, args) {
  const child = spawn(process.execPath, [`${root}${bin}`, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  child.stdout.setEncoding('utf8')
  return child
}

const server = run('apps/signal-server/bin/butterfly-server.js', ['--port', port, '--model', model])
const children = [server]
const stop = () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
server.on('exit', (code) => {
  stop()
  process.exitCode = code ?? 0
})

const url = await new Promise((resolve) => {
  let out = ''
  server.stdout.on('data', (d) => {
    process.stdout.write(d)
    out += d
    const m = out.match(/listening on (http:\/\/\S+)/)
    if (m) resolve(m[1])
  })
})

const worker = run('packages/node-worker/bin/butterfly-worker.js', [
  'join',
  '--server',
  url,
  '--name',
  'local-worker',
])
worker.stdout.pipe(process.stdout)
children.push(worker)
worker.on('exit', stop)

// Wait until the plan is loaded, then show how to use it.
for (;;) {
  const health = await fetch(`${url}/health`).then(
    (r) => r.json(),
    () => undefined,
  )
  if (health?.meshes?.[0]?.ready) break
  await new Promise((r) => setTimeout(r, 200))
}
console.log(`
Butterfly is running at ${url}  (health: ${url}/health, metrics: ${url}/metrics)

Open ${url}/ in a browser to chat with the mesh and watch it work.

Try it:
  curl ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"default","messages":[{"role":"user","content":"To be, or not to be"}],"max_tokens":32}'

Add a worker from another terminal:  npx butterfly-worker join --server ${url}
Press Ctrl-C to stop.`)
