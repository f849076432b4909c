import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'

/** Flags that work headless on a bare Linux box, loopback only. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  // WebRTC between the page and Node workers on 127.0.0.1.
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  // A software (SwiftShader) WebGPU adapter where there is no GPU: slow, but correct.
  '--enable-unsafe-webgpu',
]

/** The distribution's Chromium (scripts/ensure-chromium.mjs installs it before `npm test`). */
export function launchChromium(): Promise<Browser> {
  const executablePath = [
    process.env.BUTTERFLY_CHROMIUM,
    '/usr/bin/chromium',
    '/usr/bin/chromium-browser',
  ].find((p): p is string => p !== undefined && existsSync(p))
  if (executablePath === undefined) throw new Error('no Chromium: run node e2e/scripts/ensure-chromium.mjs')
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS })
}
