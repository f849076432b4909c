import { ModelDownloadError } from '../errors.js'

/** A model to download: a Hugging Face Hub repository, or a directory URL holding the files. */
export type RemoteModelSpec =
  | {
      readonly kind: 'hf'
      /** `org/repo`, or a legacy namespace-less `repo`. */
      readonly repo: string
      /** Branch, tag or commit; `main` unless the spec says `@REV`. */
      readonly revision: string
    }
  | {
      readonly kind: 'url'
      /** The directory URL, ending in '/'. */
      readonly base: string
    }

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co'
const DEFAULT_REVISION = 'main'

// The Hub's own rules: letters, digits, '-', '_', '.', at most 96 characters, no "--" or ".."
// (which also keeps the `org--repo` cache directory names unambiguous), no leading/trailing '-'/'.'.
const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$/
// Branches and tags may hold '/', as in refs/pr/1; each part is checked like a path segment.
const REVISION = /^[A-Za-z0-9._-][A-Za-z0-9._/-]{0,254}$/
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]'])

/** Whether `spec` names a model to download (hf: or http(s)://) rather than a directory. */
export function isRemoteSpec(spec: string): boolean {
  return spec.startsWith('hf:') || /^https?:\/\//i.test(spec)
}

/**
 * Parses `hf:ORG/REPO[@REVISION]` or an `https://…/` directory URL (`http://` only on
 * loopback, for tests and local mirrors). Everything else is ERR_MODEL_SPEC.
 */
export function parseRemoteSpec(spec: string): RemoteModelSpec {
  if (spec.startsWith('hf:')) return parseHfSpec(spec)
  return { kind: 'url', base: parseBaseUrl(spec, 'model URL') }
}

function parseHfSpec(spec: string): RemoteModelSpec {
  const body = spec.slice('hf:'.length)
  const at = body.indexOf('@')
  const repo = at < 0 ? body : body.slice(0, at)
  const revision = at < 0 ? DEFAULT_REVISION : body.slice(at + 1)
  const parts = repo.split('/')
  const bad = (why: string) =>
    new ModelDownloadError(
      'ERR_MODEL_SPEC',
      `bad model spec "${spec}": ${why}; expected hf:ORG/REPO[@REVISION]`,
    )
  if (parts.length > 2 || parts.some((p) => !validName(p))) {
    throw bad('organisation and repository names are letters, digits, "-", "_" and "." (at most 96)')
  }
  if (!REVISION.test(revision) || revision.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw bad(`revision "${revision}" is not a branch, tag or commit name`)
  }
  return { kind: 'hf', repo, revision }
}

function validName(name: string): boolean {
  return NAME.test(name) && !name.includes('--') && !name.includes('..')
}

/**
 * An http(s) URL the downloader may talk to: https anywhere, http only on loopback, no
 * credentials, query or fragment (file names are appended to it). Returned with a trailing '/'.
 */
export function parseBaseUrl(value: string, what: string): string {
  const bad = (why: string) => new ModelDownloadError('ERR_MODEL_SPEC', `bad ${what} "${value}": ${why}`)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw bad('not a URL')
  }
  if (!isAllowedUrl(url)) throw bad('must be https://, or http:// on 127.0.0.1 or localhost')
  if (url.username !== '' || url.password !== '') throw bad('credentials in the URL are not allowed')
  if (url.search !== '' || url.hash !== '') throw bad('a query or fragment is not allowed')
  return url.href.endsWith('/') ? url.href : `${url.href}/`
}

/** https anywhere; plain http only to loopback, where there is nothing to intercept. */
export function isAllowedUrl(url: URL): boolean {
  if (url.protocol === 'https:') return true
  return url.protocol === 'http:' && LOOPBACK.has(url.hostname)
}

/** `--hf-endpoint`, else $HF_ENDPOINT, else https://huggingface.co; no trailing '/'. */
export function resolveHfEndpoint(flag?: string): string {
  const value = flag ?? process.env.HF_ENDPOINT ?? DEFAULT_HF_ENDPOINT
  return parseBaseUrl(value, 'Hugging Face endpoint').replace(/\/$/, '')
}

/** A short name for logs and the mesh's model id: `org/repo` or the URL. */
export function describeSpec(spec: RemoteModelSpec): string {
  return spec.kind === 'hf' ? spec.repo : spec.base
}
