import { CliUsageError } from '@butterfly/node-platform'
import { Option } from 'commander'
import { CLUSTER_SECRET_BYTES } from './control/cluster-seal.js'

/** The parsed cluster flag of `butterfly-server`. */
export interface ClusterCliOptions {
  redis?: string
  clusterSecret?: string
}

function redisArg(value: string): string {
  let url: URL | undefined
  try {
    url = value.length <= 2048 ? new URL(value) : undefined
  } catch {
    url = undefined
  }
  if (url === undefined || (url.protocol !== 'redis:' && url.protocol !== 'rediss:') || url.hostname === '') {
    throw new CliUsageError('--redis must be a redis://HOST:PORT or rediss://HOST:PORT URL')
  }
  return value
}

/** `--redis URL`: several servers share their meshes through this Redis (see docs/deploy.md). */
export function redisOption(): Option {
  return new Option(
    '--redis <url>',
    'share the mesh with every server on this Redis (redis://[user:password@]HOST:PORT; prefer the env variable for a password)',
  )
    .env('BUTTERFLY_REDIS_URL')
    .argParser(redisArg)
}

function secretArg(value: string): string {
  const bytes = Buffer.byteLength(value)
  if (bytes < CLUSTER_SECRET_BYTES.min || bytes > CLUSTER_SECRET_BYTES.max) {
    throw new CliUsageError(
      `--cluster-secret must be ${CLUSTER_SECRET_BYTES.min} to ${CLUSTER_SECRET_BYTES.max} bytes`,
    )
  }
  return value
}

/** `--cluster-secret S`: seals what the servers write to Redis and send each other. */
export function clusterSecretOption(): Option {
  return new Option(
    '--cluster-secret <secret>',
    'shared by every server on the Redis: what they write and send is sealed with it (prefer the env variable)',
  )
    .env('BUTTERFLY_CLUSTER_SECRET')
    .argParser(secretArg)
}

/** The cluster part of ServerInit; a secret without --redis is a usage error. */
export function clusterFromCli(
  opts: ClusterCliOptions,
): { readonly url: string; readonly secret?: string } | undefined {
  if (opts.clusterSecret !== undefined && opts.redis === undefined) {
    throw new CliUsageError('--cluster-secret needs --redis (or BUTTERFLY_REDIS_URL)')
  }
  if (opts.redis === undefined) return undefined
  return opts.clusterSecret === undefined
    ? { url: opts.redis }
    : { url: opts.redis, secret: opts.clusterSecret }
}
