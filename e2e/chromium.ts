import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'
import { CHROMIUM_ARGS } from './chromium-args.mjs'

export { CHROMIUM_ARGS }

/**
 * The distribution's Chromium (scripts/ensure-chromium.mjs installs it before `npm test`).
 * `args` replaces the default flags (e.g. without --enable-unsafe-webgpu: a browser with no adapter).
 */
export function launchChromium(args: readonly string[] = CHROMIUM_ARGS): Promise<Browser> {
  const executablePath = [
    process.env.BUTTERFLY_CHROMIUM,
    '/usr/bin/chromium',
    '/usr/bin/chromium-browser',
  ].find((p): p is string => p !== undefined && existsSync(p))
  if (executablePath === undefined) throw new Error('no Chromium: run node e2e/scripts/ensure-chromium.mjs')
  return chromium.launch({ executablePath, headless: true, args: [...args] })
}
