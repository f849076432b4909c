import { CliUsageError } from '@butterfly/node-platform'
import { Option } from 'commander'

/** The parsed cluster flag of `butterfly-server`. */
export interface ClusterCliOptions {
  redis?: string
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
