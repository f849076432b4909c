import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'
import { CHROMIUM_ARGS } from './chromium-args.mjs'

export { CHROMIUM_ARGS }

/** The distribution's Chromium (scripts/ensure-chromium.mjs installs it before `npm test`). */
export function launchChromium(): Promise<Browser> {
  const executablePath = [
    process.env.BUTTERFLY_CHROMIUM,
    '/usr/bin/chromium',
    '/usr/bin/chromium-browser',
  ].find((p): p is string => p !== undefined && existsSync(p))
  if (executablePath === undefined) throw new Error('no Chromium: run node e2e/scripts/ensure-chromium.mjs')
  return chromium.launch({ executablePath, headless: true, args: [...CHROMIUM_ARGS] })
}
